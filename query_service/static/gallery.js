// The gallery page's script (a file of its own: the Content-Security-Policy allows no inline script).
"use strict";
const $ = (id) => document.getElementById(id);
const selected = new Set();

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function describe(payload) {
  const n = payload.results.length;
  let text = `${n} result${n === 1 ? "" : "s"} for ${payload.query}`;
  if (payload.auto_category) text += ` — only "${payload.auto_category}", named in the text`;
  else if (payload.applied_categories.length) text += ` — only ${payload.applied_categories.join(" or ")}`;
  return text + ". Click a photo to find similar ones.";
}

function render(payload) {
  const grid = $("grid");
  grid.replaceChildren();
  for (const r of payload.results) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "result";
    img.alt = r.path;
    img.title = `${r.id}: ${r.path}`;
    img.dataset.id = r.id;
    img.addEventListener("load", () => { img.dataset.loaded = "1"; });
    img.addEventListener("click", () => searchSimilar(r.id));
    img.src = `/images/${encodeURIComponent(r.id)}`;
    const caption = document.createElement("figcaption");
    caption.innerHTML = `<span class="dist">#${r.rank} · distance ${r.distance.toFixed(4)}</span><br>` +
      `<span class="cats"></span>`;
    caption.querySelector(".cats").textContent = r.categories.join(" | ") || "no annotated objects";
    figure.append(img, caption);
    grid.append(figure);
  }
  setStatus(describe(payload), false);
}

async function show(responsePromise) {
  setStatus("searching…", false);
  try {
    const response = await responsePromise;
    const payload = await response.json();
    if (!response.ok) throw new Error(payload.error || response.statusText);
    render(payload);
  } catch (err) {
    $("grid").replaceChildren();
    setStatus(String(err.message || err), true);
  }
}

function searchText(q) {
  const params = new URLSearchParams({ q, k: $("k").value, auto_category: $("auto").checked ? "on" : "off" });
  for (const c of selected) params.append("category", c);
  history.replaceState(null, "", "/?" + params.toString());
  return show(fetch("/api/search?" + params.toString()));
}

function searchImageBlob(blob, name) {
  const form = new FormData();
  form.append("image", blob, name);
  form.append("k", $("k").value);
  for (const c of selected) form.append("category", c);
  return show(fetch("/api/search", { method: "POST", body: form }));
}

async function searchSimilar(id) {
  const response = await fetch(`/images/${encodeURIComponent(id)}`);
  if (!response.ok) { setStatus(`cannot load image ${id}`, true); return; }
  $("q").value = "";
  await searchImageBlob(await response.blob(), id);
}

async function loadChips() {
  const { categories } = await (await fetch("/api/categories")).json();
  for (const name of categories) {
    const chip = document.createElement("span");
    chip.className = "chip" + (selected.has(name) ? " on" : "");
    chip.textContent = name;
    chip.addEventListener("click", () => {
      selected.has(name) ? selected.delete(name) : selected.add(name);
      chip.classList.toggle("on");
      if ($("q").value.trim()) searchText($("q").value.trim());
    });
    $("chips").append(chip);
  }
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("q").value.trim();
  if (q) searchText(q);
});
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) searchImageBlob(file, file.name);
});

const params = new URLSearchParams(location.search);
for (const c of params.getAll("category")) selected.add(c);
if (params.get("k")) $("k").value = params.get("k");
if (params.get("auto_category") === "off") $("auto").checked = false;
loadChips();
if (params.get("q")) { $("q").value = params.get("q"); searchText(params.get("q")); }
