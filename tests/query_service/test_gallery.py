"""The gallery page in a real headless Chromium, over a real query service, embedder and ChromaDB
holding generated outfits (garments of known colours, their vectors from the embedder's regions):
what was understood as removable chips, the matched garments' boxes on the photos, the path, the
address bar, the empty page and a phone's screen. Screenshots land in the test's tmp directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack import servers
from devstack.browser import Browser
from devstack.outfit_index import outfits_with_red_tops, write_outfit_index
from fashionrag.collection import GarmentRecord

pytestmark = pytest.mark.integration

COLLECTION = "gallery-tests"
TOPS = "top, t-shirt, sweatshirt"
PHOTOS = 24
RED_TOPS = 3

# Collects the page's Content-Security-Policy violations (the page declares its CSP itself).
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""
SHOWN = "['results', 'none', 'empty', 'error'].includes(document.body.dataset.state)"
IMAGES_LOADED = (
    "[...document.querySelectorAll('img.result')].every((i) => i.dataset.loaded === '1')"
)
CARDS = """[...document.querySelectorAll('#grid .card')].map((card) => ({
  id: card.dataset.id,
  path: card.querySelector('.path').textContent,
  pathShown: card.querySelector('.path').getBoundingClientRect().height > 0,
  boxes: [...card.querySelectorAll('g.box')].map((g) => g.dataset.garment),
  labels: [...card.querySelectorAll('g.box text')].map((t) => t.textContent),
}))"""
CHIPS = """[...document.querySelectorAll('#understood .term')].map((t) => ({
  kind: t.dataset.kind, meaning: t.dataset.meaning, filter: !t.classList.contains('off'),
  colours: [...t.querySelectorAll('.tag')].map((g) => g.dataset.colour),
}))"""


@pytest.fixture(scope="module")
def outfit_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The images directory of the outfits (the query service serves files inside it only)."""
    return tmp_path_factory.mktemp("gallery-outfits")


@pytest.fixture(scope="module")
def photos(
    embedder: servers.Server, chroma_url: str, outfit_images: Path
) -> dict[str, list[GarmentRecord]]:
    """The outfits written as the indexer writes them (devstack.outfit_index); photo id → its
    garments."""
    outfits = [o for _, o in outfits_with_red_tops(PHOTOS, RED_TOPS, 240, 320)]
    return write_outfit_index(outfits, embedder.address, chroma_url, COLLECTION, outfit_images)


@pytest.fixture(scope="module")
def query(
    photos: dict[str, list[GarmentRecord]],
    outfit_images: Path,
    embedder: servers.Server,
    chroma_url: str,
    logs_dir: Path,
) -> Iterator[servers.Server]:
    server = servers.start_query(
        logs_dir / "query-gallery.log",
        embedder.address,
        chroma_url,
        COLLECTION,
        "--images-dir",
        str(outfit_images),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium-profile")) as browser:
        browser.on_new_document(CSP_WATCH)
        yield browser


@pytest.fixture()
def page(browser: Browser) -> Iterator[Browser]:
    """The browser on a desktop screen; after the test, the page broke no CSP rule."""
    browser.call("Emulation.clearDeviceMetricsOverride")
    yield browser
    assert browser.evaluate("window.cspViolations") == []


def api(query: servers.Server, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{query.http}/api/search", params=params, timeout=30)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def shown(page: Browser) -> str:
    """Wait until the page shows an answer and its photos have loaded; return the state."""
    state: str = page.wait_for(f"{SHOWN} && {IMAGES_LOADED} && document.body.dataset.state")
    return state


def address(page: Browser) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.evaluate("location.href")).query)


def click(page: Browser, selector: str) -> None:
    page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


def test_a_garment_search_shows_its_chips_the_matched_boxes_and_the_paths(
    query: servers.Server, page: Browser, tmp_path: Path
) -> None:
    page.open(f"{query.http}/?q=red+tops&k=20")
    assert shown(page) == "results"
    expected = api(query, q="red tops", k=20)
    assert expected["grain"] == "garment" and len(expected["results"]) >= RED_TOPS
    assert page.evaluate(CHIPS) == [
        {"kind": "garment", "meaning": TOPS, "filter": True, "colours": ["red"]}
    ]
    highlighted = page.evaluate(
        "[...document.querySelectorAll('#chips .chip.auto')].map((c) => c.dataset.category)"
    )
    assert highlighted == [TOPS]
    cards = page.evaluate(CARDS)
    assert [c["id"] for c in cards] == [r["id"] for r in expected["results"]]
    for card, result in zip(cards, expected["results"], strict=True):
        assert card["path"] == result["path"] and card["pathShown"]
        assert card["boxes"] == [g["id"] for g in result["garments"]]
        assert all(label.startswith("top · ") and "red" in label for label in card["labels"])
    page.screenshot(tmp_path / "gallery-desktop.png")


def test_each_box_is_drawn_over_its_garment_on_the_contained_photo(
    query: servers.Server, page: Browser
) -> None:
    page.open(f"{query.http}/?q=shoes&k=5")
    assert shown(page) == "results"
    results = {r["id"]: r for r in api(query, q="shoes", k=5)["results"]}
    # Where each box is on screen, and where the photo's pixels put it: the contained image
    # is scaled by s and centred in its frame.
    drawn = page.evaluate(
        """[...document.querySelectorAll('#grid .card')].map((card) => {
             const img = card.querySelector('img').getBoundingClientRect();
             return { id: card.dataset.id, frame: [img.left, img.top, img.width, img.height],
                      boxes: [...card.querySelectorAll('rect.edge')].map((r) => {
                        const b = r.getBoundingClientRect();
                        return [b.left, b.top, b.right, b.bottom]; }) };
           })"""
    )
    assert len(drawn) == 5
    for card in drawn:
        result = results[card["id"]]
        left, top, width, height = card["frame"]
        s = min(width / result["width"], height / result["height"])
        dx = left + (width - result["width"] * s) / 2
        dy = top + (height - result["height"] * s) / 2
        assert len(card["boxes"]) == len(result["garments"]) == 2  # each outfit has two shoes
        for box, garment in zip(card["boxes"], result["garments"], strict=True):
            x0, y0, x1, y1 = garment["box"]
            assert box == pytest.approx([dx + x0 * s, dy + y0 * s, dx + x1 * s, dy + y1 * s], abs=1)


def test_removing_chips_searches_again_with_what_remains_as_explicit_filters(
    query: servers.Server, page: Browser, photos: dict[str, list[GarmentRecord]], tmp_path: Path
) -> None:
    page.open(f"{query.http}/?q=red+tops+and+blue+jeans&k=50")
    assert shown(page) == "results"
    chips = page.evaluate(CHIPS)
    assert [(c["meaning"], c["colours"]) for c in chips] == [(TOPS, ["red"]), ("pants", ["blue"])]

    click(page, '#understood .term[data-meaning="pants"] > .x')
    page.wait_for("location.search.includes('auto_category=off')")
    assert shown(page) == "results"
    assert address(page) == {
        "q": ["red tops and blue jeans"],
        "k": ["50"],
        "category": [TOPS],
        "colour": ["red"],
        "auto_category": ["off"],
    }
    red_tops = {
        pid
        for pid, gs in photos.items()
        if any(g.category == TOPS and "red" in (g.colour, g.colour2) for g in gs)
    }
    assert {c["id"] for c in page.evaluate(CARDS)} == red_tops
    assert page.evaluate("document.querySelector('#auto').checked") is False
    page.screenshot(tmp_path / "gallery-explicit-filters.png")

    chips = page.evaluate(CHIPS)
    assert [(c["kind"], c["meaning"]) for c in chips] == [("garment", TOPS), ("colour", "red")]
    click(page, '#understood .term[data-meaning="red"] > .x')
    page.wait_for("!location.search.includes('colour=')")
    assert shown(page) == "results"
    assert address(page)["category"] == [TOPS]
    tops = {pid for pid, gs in photos.items() if any(g.category == TOPS for g in gs)}
    cards = page.evaluate(CARDS)
    assert {c["id"] for c in cards} == tops
    assert all(c["boxes"] for c in cards)

    click(page, f'#understood .term[data-meaning="{TOPS}"] > .x')
    page.wait_for("!new URLSearchParams(location.search).has('category')")
    assert shown(page) == "results"
    assert page.evaluate(CHIPS) == []
    cards = page.evaluate(CARDS)
    assert len(cards) == len(photos) and not any(c["boxes"] for c in cards)  # photo grain

    page.evaluate("history.back()")
    page.wait_for("new URLSearchParams(location.search).has('category')")
    assert shown(page) == "results"
    assert [c["meaning"] for c in page.evaluate(CHIPS)] == [TOPS]


def test_removing_a_garments_colour_tag_merges_the_colours_that_remain(
    query: servers.Server, page: Browser, photos: dict[str, list[GarmentRecord]]
) -> None:
    page.open(f"{query.http}/?q=red+tops+and+blue+jeans&k=50")
    assert shown(page) == "results"
    click(page, f'#understood .term[data-meaning="{TOPS}"] .tag[data-colour="red"] > .x')
    page.wait_for("location.search.includes('auto_category=off')")
    assert shown(page) == "results"
    query_string = address(page)
    assert (query_string["category"], query_string["colour"]) == ([TOPS, "pants"], ["blue"])
    blue = {
        pid
        for pid, gs in photos.items()
        if any(g.category in (TOPS, "pants") and "blue" in (g.colour, g.colour2) for g in gs)
    }
    assert {c["id"] for c in page.evaluate(CARDS)} == blue


def test_words_understood_but_not_filtering_are_shown_as_such(
    query: servers.Server, page: Browser, tmp_path: Path
) -> None:
    page.open(f"{query.http}/?q=something+crimson+with+a+collar&k=4")
    assert shown(page) == "results"
    assert page.evaluate(CHIPS) == [
        {"kind": "colour", "meaning": "red", "filter": False, "colours": []},
        {"kind": "part", "meaning": "collar", "filter": False, "colours": []},
    ]
    page.screenshot(tmp_path / "gallery-understood-only.png")


def test_k_from_the_address_is_kept(query: servers.Server, page: Browser) -> None:
    page.open(f"{query.http}/?q=shoes&k=7")
    assert shown(page) == "results"
    assert len(page.evaluate(CARDS)) == 7
    assert page.evaluate("document.querySelector('#k').value") == "7"


def test_the_empty_page_offers_example_searches(query: servers.Server, page: Browser) -> None:
    page.open(f"{query.http}/")
    assert shown(page) == "empty"
    links = page.evaluate(
        "[...document.querySelectorAll('#hint a')].filter((a) => a.offsetHeight > 0)"
        ".map((a) => a.textContent)"
    )
    assert links == ["red tops", "black shoes", "blue jeans", "a long dress"]
    click(page, "#hint a")
    assert shown(page) == "results"
    assert address(page)["q"] == ["red tops"]
    assert page.evaluate("document.querySelector('#hint').hidden") is True


def test_no_results_says_so_and_offers_to_drop_the_filters(
    query: servers.Server, page: Browser
) -> None:
    page.open(f"{query.http}/?q=something&category=umbrella")  # no outfit carries one
    assert shown(page) == "none"
    assert "No results" in page.evaluate("document.querySelector('#status').textContent")
    click(page, "#nofilters")
    page.wait_for("!new URLSearchParams(location.search).has('category')")
    assert shown(page) == "results"


def test_a_phone_sees_the_first_photo_near_the_top(
    query: servers.Server, page: Browser, tmp_path: Path
) -> None:
    page.viewport(390, 844, mobile=True, scale=2)
    page.open(f"{query.http}/?q=red+tops")
    assert shown(page) == "results"
    assert page.evaluate("window.innerWidth") == 390
    top = page.evaluate("document.querySelector('#grid .frame').getBoundingClientRect().top")
    assert top < 300
    page.screenshot(tmp_path / "gallery-phone.png")
    page.open(f"{query.http}/")
    assert shown(page) == "empty"
    page.screenshot(tmp_path / "gallery-phone-empty.png")


def test_a_clicked_photo_and_a_picked_file_search_by_image(
    query: servers.Server, page: Browser, photos: dict[str, list[GarmentRecord]]
) -> None:
    page.open(f"{query.http}/?q=shoes&k=5")
    assert shown(page) == "results"
    third = page.evaluate(CARDS)[2]
    click(page, f'#grid .card[data-id="{third["id"]}"] .frame')
    page.wait_for("document.querySelector('#status').textContent.includes('photos like')")
    assert shown(page) == "results"
    assert page.evaluate(CARDS)[0]["id"] == third["id"]

    page.set_files("#file", [Path(third["path"]).with_name("1.jpg")])
    page.wait_for("document.querySelector('#status').textContent.includes('like 1.jpg')")
    assert shown(page) == "results"
    assert page.evaluate(CARDS)[0]["id"] == "train-1"
