// The gallery page over the query service's JSON API (GET/POST /api/search, GET /api/categories,
// GET /images/<id>). No framework and no inline code, so it runs under
// Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:.
//
// The address bar always says what is searched (q, k, category, colour, auto_category), so a
// search can be shared and reloaded; the browser's back button steps through searches.
// <body data-state> says where the page is (loading, empty, searching, results, none, error),
// for people's style sheets and for the browser tests.
"use strict";

const K_DEFAULT = 20;
const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

/** What is searched. `categories` and `colours` are the explicit filters (the URL's). */
const state = { q: "", k: K_DEFAULT, auto: true, categories: [], colours: [] };
// Whether the person unticked "understand the words" themselves: only then does a new text
// keep understanding off (a chip's removal turns it off for that text only).
let autoOffByHand = false;
// The last search shown: its JSON, its chips, and the image when it was an image search.
let shown = { payload: null, chips: [], image: null };
let searchSeq = 0;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

const unique = (items) => [...new Set(items)];

function clampK(value) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? Math.min(100, Math.max(1, n)) : K_DEFAULT;
}

// ---- the address bar ----------------------------------------------------------------------

function readUrl(search = location.search) {
  const p = new URLSearchParams(search);
  state.q = (p.get("q") || "").trim();
  state.k = clampK(p.get("k"));
  state.auto = p.get("auto_category") !== "off";
  state.categories = unique(p.getAll("category"));
  state.colours = unique(p.getAll("colour"));
}

function searchParams() {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.q || state.k !== K_DEFAULT) p.set("k", String(state.k));
  for (const c of state.categories) p.append("category", c);
  for (const c of state.colours) p.append("colour", c);
  if (!state.auto) p.set("auto_category", "off");
  return p;
}

function syncControls() {
  $("q").value = state.q;
  $("k").value = String(state.k);
  $("auto").checked = state.auto;
}

/** Run the text search `state` describes, recorded in the address bar (push: a new entry). */
function run(push) {
  const p = searchParams();
  const url = p.toString() ? `/?${p}` : "/";
  if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  syncControls();
  if (!state.q) {
    showEmpty();
    return Promise.resolve();
  }
  return show(fetch(`/api/search?${p}`), null);
}

// ---- searching and showing ----------------------------------------------------------------

function setStatus(...content) {
  $("status").replaceChildren(...content);
  $("status").className = "";
}

function showEmpty() {
  searchSeq += 1; // an answer still on its way is no longer wanted
  shown = { payload: null, chips: [], image: null };
  $("grid").replaceChildren();
  $("understood").replaceChildren();
  $("understood").hidden = true;
  setStatus();
  $("hint").hidden = false;
  highlightCategories([]);
  document.body.dataset.state = "empty";
}

async function show(request, image) {
  const seq = ++searchSeq;
  document.body.dataset.state = "searching";
  document.body.classList.add("busy");
  $("hint").hidden = true;
  setStatus("searching…");
  let payload = null;
  let failure = null;
  try {
    const response = await request;
    payload = await response.json();
    if (!response.ok) throw new Error(payload.error || response.statusText);
  } catch (err) {
    failure = String(err.message || err);
  }
  if (seq !== searchSeq) return; // a later search answers instead
  document.body.classList.remove("busy");
  if (failure !== null) {
    shown = { payload: null, chips: [], image: null };
    $("grid").replaceChildren();
    $("understood").hidden = true;
    setStatus(failure);
    $("status").className = "error";
    document.body.dataset.state = "error";
    return;
  }
  render(payload, image);
}

function render(payload, image) {
  const chips = image ? explicitChips(payload) : chipsOf(payload);
  shown = { payload, chips, image };
  $("grid").replaceChildren(...payload.results.map(card));
  renderChips(chips);
  highlightCategories(payload.applied_categories);
  const n = payload.results.length;
  if (n === 0) {
    renderNoResults(payload, image, chips);
    document.body.dataset.state = "none";
    return;
  }
  const what = image ? `photos like ${image.name}` : `${payload.query}`;
  let text = `${n} result${n === 1 ? "" : "s"} for ${what}`;
  if (payload.grain === "garment") text += ", ranked by their best-matching garment";
  setStatus(`${text}. Click a photo to find similar ones.`);
  document.body.dataset.state = "results";
}

function renderNoResults(payload, image, chips) {
  const what = image ? `photos like ${image.name}` : `“${payload.query}”`;
  const filtered = chips.some((c) => c.applied);
  if (!filtered) {
    setStatus(`No results for ${what}. Try other words.`);
    return;
  }
  const clear = el("button", { type: "button", id: "nofilters", text: "search without filters" });
  clear.addEventListener("click", () => {
    state.categories = [];
    state.colours = [];
    if (image) searchImage(image.blob, image.name);
    else {
      state.auto = false;
      run(true);
    }
  });
  setStatus(`No results for ${what} with these filters: remove one (×) above, or `, clear);
}

// ---- result cards -------------------------------------------------------------------------

const shortCategory = (category) => category.split(",")[0];

function garmentLabel(g, short) {
  const colours = [g.colour, g.colour2].filter(Boolean).join("/");
  const name = short ? shortCategory(g.category) : g.category;
  return [name, colours, g.distance.toFixed(3)].filter(Boolean).join(" · ");
}

function card(r) {
  const img = el("img", { class: "result", alt: r.path, "data-id": r.id });
  img.addEventListener("load", () => { img.dataset.loaded = "1"; });
  img.src = `/images/${encodeURIComponent(r.id)}`;
  const frame = el("div", {
    class: "frame", tabindex: "0", role: "button", title: "find photos like this one",
  }, img);
  if (r.garments.length && r.width && r.height) frame.append(boxes(r));
  frame.addEventListener("click", () => searchSimilar(r.id));
  frame.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      searchSimilar(r.id);
    }
  });
  const caption = el("figcaption", {},
    el("div", {},
      el("span", { class: "dist", text: `#${r.rank} · distance ${r.distance.toFixed(4)}` })),
    el("div", { class: "path", title: r.path }, el("bdi", { text: r.path })),
    el("div", { class: "cats", text: r.categories.join(" | ") || "no annotated objects" }));
  if (r.garments.length) {
    caption.append(el("ul", { class: "matched" },
      ...r.garments.map((g) => el("li", { text: garmentLabel(g, false) }))));
  }
  return el("figure", { class: "card", "data-id": r.id }, frame, caption);
}

/** The matched garments' boxes, in the photo's pixels: the SVG's viewBox is the photo and it
 * fits the frame as the contained photo does (xMidYMid meet = object-fit: contain). */
function boxes(r) {
  const layer = svg("svg", {
    class: "boxes", viewBox: `0 0 ${r.width} ${r.height}`, preserveAspectRatio: "xMidYMid meet",
  });
  const font = Math.max(r.width, r.height) / 22;
  for (const g of r.garments) {
    const [x0, y0, x1, y1] = g.box;
    const size = { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) };
    const group = svg("g", { class: "box", "data-garment": g.id });
    const title = svg("title");
    title.textContent = garmentLabel(g, false);
    const label = svg("text", {
      x: x0 + font * 0.25, y: y0 + font * 1.05, "font-size": font, "stroke-width": font / 6,
    });
    label.textContent = garmentLabel(g, true);
    group.append(title, svg("rect", { class: "halo", ...size }),
      svg("rect", { class: "edge", ...size }), label);
    layer.append(group);
  }
  return layer;
}

// ---- what was understood, as removable chips ----------------------------------------------
//
// While the words are understood (understanding on, no explicit category), the chips are what
// the service understood: a chip per garment it filters on, with the colours that qualify it as
// tags; the colours it tied to no garment; the parts it recognised. A chip that is no filter (a
// part, a colour of a photo-grain search such as "something red") is drawn dashed. Otherwise the
// chips are the explicit `category=` and `colour=` parameters.
//
// Removing a chip or a colour tag (×) turns understanding off and searches the same text again
// with what remains *applied* as explicit `category=` / `colour=` parameters: the address says
// exactly what filters, and the removed words still rank (the text vector) but no longer filter.
// What was understood without filtering (parts, untied colours) is dropped. The parameters carry
// one colour list for all categories, so per-garment colours of what remains merge: "red tops
// and blue jeans" less "blue jeans" is tops in red, but less its "red" tag is tops or jeans in
// blue. Ticking or unticking a category chip edits the same explicit filters.

function explicitChips(payload) {
  const garments = new Set(payload.garment_filters.map((f) => f.category));
  return [
    ...state.categories.map((c) => ({
      kind: garments.has(c) ? "garment" : "category", words: c, meaning: c, applied: true, colours: [],
    })),
    ...state.colours.map((c) => ({
      kind: "colour", words: c, meaning: c, applied: payload.applied_colours.includes(c), colours: [],
    })),
  ];
}

function chipsOf(payload) {
  if (!state.auto || state.categories.length) return explicitChips(payload);
  const understood = payload.understood;
  const wordsFor = (kind, meaning) => unique(
    understood.filter((u) => u.kind === kind && u.meaning === meaning).map((u) => u.words),
  ).join(", ");
  const chips = [];
  const tied = new Set();
  const filters = payload.garment_filters.filter((f) => f.category);
  // An index without garment records filters photos by the understood garments instead.
  const garments = filters.length
    ? filters
    : payload.applied_categories.map((category) => ({ category, colours: [] }));
  for (const f of garments) {
    const colours = state.colours.length ? [] : f.colours;
    colours.forEach((c) => tied.add(c));
    chips.push({
      kind: "garment", words: wordsFor("garment", f.category) || f.category,
      meaning: f.category, applied: true, colours,
    });
  }
  if (state.colours.length) {
    for (const c of state.colours) {
      chips.push({ kind: "colour", words: c, meaning: c, applied: true, colours: [] });
    }
  } else {
    for (const meaning of unique(understood.filter((u) => u.kind === "colour").map((u) => u.meaning))) {
      if (!tied.has(meaning)) {
        chips.push({
          kind: "colour", words: wordsFor("colour", meaning), meaning,
          applied: payload.applied_colours.includes(meaning), colours: [],
        });
      }
    }
  }
  for (const meaning of unique(understood.filter((u) => u.kind === "part").map((u) => u.meaning))) {
    chips.push({ kind: "part", words: wordsFor("part", meaning), meaning, applied: false, colours: [] });
  }
  return chips;
}

/** The filters applied now, as explicit parameters, less `chip` (or only its `colour` tag). */
function remainingFilters(chip, colour) {
  const categories = [];
  const colours = [];
  for (const c of shown.chips) {
    if (!c.applied) continue;
    if (c.kind === "colour") {
      if (c !== chip) colours.push(c.meaning);
      continue;
    }
    if (c === chip && colour === undefined) continue;
    categories.push(c.meaning);
    colours.push(...c.colours.filter((t) => !(c === chip && t === colour)));
  }
  return { categories: unique(categories), colours: unique(colours) };
}

function searchWithFilters({ categories, colours }) {
  state.categories = categories;
  if (shown.image) return searchImage(shown.image.blob, shown.image.name);
  state.colours = colours;
  state.auto = false;
  return run(true);
}

function removeButton(label, onRemove) {
  const button = el("button", { type: "button", class: "x", "aria-label": `remove ${label}`, title: `remove ${label}`, text: "×" });
  button.addEventListener("click", onRemove);
  return button;
}

function swatch(colour) {
  return el("i", { class: `swatch c-${colour}` });
}

function renderChips(chips) {
  const box = $("understood");
  box.replaceChildren();
  box.hidden = chips.length === 0;
  if (!chips.length) return;
  const understanding = !shown.image && state.auto && !state.categories.length;
  box.append(el("span", { class: "lead", text: understanding ? "understood:" : "filters:" }));
  for (const chip of chips) {
    const node = el("span", {
      class: `term ${chip.kind}${chip.applied ? "" : " off"}`,
      "data-kind": chip.kind, "data-meaning": chip.meaning,
      title: chip.applied ? `${chip.kind}: a filter` : `${chip.kind}: understood, not a filter`,
    });
    if (chip.kind === "colour") node.append(swatch(chip.meaning));
    node.append(el("span", { class: "words", text: chip.words }));
    if (chip.meaning !== chip.words) node.append(el("span", { class: "meaning", text: `= ${chip.meaning}` }));
    for (const colour of chip.colours) {
      node.append(el("span", { class: "tag", "data-colour": colour }, swatch(colour), colour,
        removeButton(colour, () => searchWithFilters(remainingFilters(chip, colour)))));
    }
    node.append(removeButton(chip.words, () => searchWithFilters(remainingFilters(chip))));
    box.append(node);
  }
}

// ---- the 46 category chips ----------------------------------------------------------------

function highlightCategories(applied) {
  const explicit = new Set(state.categories);
  const auto = new Set(applied.filter((c) => !explicit.has(c)));
  for (const chip of $("chips").children) {
    const name = chip.dataset.category;
    chip.classList.toggle("on", explicit.has(name));
    chip.classList.toggle("auto", auto.has(name));
    chip.setAttribute("aria-pressed", String(explicit.has(name) || auto.has(name)));
  }
  $("applied").textContent = [...explicit, ...auto].join(" · ");
}

function toggleCategory(name) {
  const chip = shown.chips.find((c) => c.applied && c.kind !== "colour" && c.meaning === name);
  if (!shown.payload) {
    // Nothing shown yet: pick the filter for the search to come.
    state.categories = state.categories.includes(name)
      ? state.categories.filter((c) => c !== name)
      : [...state.categories, name];
    highlightCategories([]);
    if (state.q) run(true);
    return;
  }
  if (chip) {
    searchWithFilters(remainingFilters(chip));
    return;
  }
  const now = remainingFilters(null);
  searchWithFilters({ categories: [...now.categories, name], colours: now.colours });
}

async function loadCategories() {
  const response = await fetch("/api/categories");
  const { categories } = await response.json();
  for (const name of categories) {
    const chip = el("span", { class: "chip", role: "button", tabindex: "0", "data-category": name, text: name });
    chip.addEventListener("click", () => toggleCategory(name));
    chip.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        toggleCategory(name);
      }
    });
    $("chips").append(chip);
  }
  highlightCategories(shown.payload ? shown.payload.applied_categories : []);
}

// ---- image searches -----------------------------------------------------------------------

function searchImage(blob, name) {
  const form = new FormData();
  form.append("image", blob, name);
  form.append("k", String(state.k));
  // Colours are refused for image queries (they rank whole photos): only categories go.
  for (const c of state.categories) form.append("category", c);
  state.q = "";
  state.colours = [];
  const p = searchParams();
  history.pushState(null, "", p.toString() ? `/?${p}` : "/");
  syncControls();
  return show(fetch("/api/search", { method: "POST", body: form }), { blob, name });
}

async function searchSimilar(id) {
  const response = await fetch(`/images/${encodeURIComponent(id)}`);
  if (!response.ok) {
    setStatus(`cannot load image ${id}`);
    $("status").className = "error";
    return;
  }
  await searchImage(await response.blob(), id);
}

// ---- the controls -------------------------------------------------------------------------

/** A new text starts afresh: the filters of the last text's words do not carry over. */
function searchNewText(q) {
  if (q !== state.q && (shown.payload || shown.image)) {
    state.categories = [];
    state.colours = [];
    state.auto = !autoOffByHand;
  }
  state.q = q;
  return run(true);
}

function init() {
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.k = clampK($("k").value);
    searchNewText($("q").value.trim());
  });
  $("k").addEventListener("change", () => {
    state.k = clampK($("k").value);
    if (shown.image) searchImage(shown.image.blob, shown.image.name);
    else run(true);
  });
  $("auto").addEventListener("change", () => {
    state.auto = $("auto").checked;
    autoOffByHand = !state.auto;
    if (state.q) run(true);
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) searchImage(file, file.name);
    $("file").value = ""; // picking the same file again searches again
  });
  for (const link of document.querySelectorAll("#hint .example, #home")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      readUrl(new URL(link.href).search);
      autoOffByHand = false;
      run(true);
    });
  }
  window.addEventListener("popstate", () => {
    readUrl();
    run(false);
  });
  // On a wide screen the category chips are open; on a phone they wait behind their summary.
  $("categories").open = window.matchMedia("(min-width: 700px)").matches;
  loadCategories();
  readUrl();
  run(false);
}

init();
