// The access token, when the service asks for one (its bearer token): kept for this tab only
// (sessionStorage) and sent as an Authorization header on the page's own requests. A script of
// its own, whatever the gallery's does: it wraps fetch, asks for the token on a 401, and fetches
// again, with the token, an image that a plain <img> could not load.
"use strict";
(() => {
  const KEY = "fashionrag-token";
  const token = () => sessionStorage.getItem(KEY);
  const plainFetch = window.fetch.bind(window);
  let form = null;

  function ask() {
    if (form) return;
    form = document.createElement("form");
    form.id = "auth";
    const label = document.createElement("label");
    label.textContent = "This service asks for an access token: ";
    const input = document.createElement("input");
    Object.assign(input, { id: "token", type: "password", autocomplete: "off", required: true });
    const button = document.createElement("button");
    Object.assign(button, { type: "submit", textContent: "Use token" });
    label.append(input);
    form.append(label, button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      location.reload();  // the page keeps its query in the URL
    });
    document.body.prepend(form);
  }

  window.fetch = async (resource, options = {}) => {
    const url = new URL(resource instanceof Request ? resource.url : resource, location.href);
    if (url.origin === location.origin && token()) {
      const headers = new Headers(options.headers || {});
      headers.set("Authorization", `Bearer ${token()}`);
      options = { ...options, headers };
    }
    const response = await plainFetch(resource, options);
    if (response.status === 401) ask();
    return response;
  };

  // Error events do not bubble: listen in the capture phase for every <img> of the page.
  document.addEventListener("error", async (event) => {
    const img = event.target;
    if (!(img instanceof HTMLImageElement) || !token() || img.dataset.authRetried) return;
    img.dataset.authRetried = "1";
    const response = await window.fetch(img.src);
    if (!response.ok) return;
    const blobUrl = URL.createObjectURL(await response.blob());
    img.addEventListener("load", () => URL.revokeObjectURL(blobUrl), { once: true });
    img.src = blobUrl;
  }, true);
})();
