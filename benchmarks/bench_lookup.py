"""Filtered lookups at garment scale: which ChromaDB layout answers "red tops" fastest while it
still finds what exact search under the same filter finds.

Generated, clustered unit vectors stand in for OpenCLIP embeddings: 250,000 garments in 45,000
photos by default, with Fashionpedia-like category and colour frequencies. They are loaded once
into a real `chroma run` data directory cached under /tmp/lookup-bench (keyed by sizes and seed),
so later runs only measure. Each layout answers the same distinct query vectors; latency is per
lookup (one caller), recall@10 is measured against exact numpy search under the same filter, on
the top 10 distinct photos (each photo ranked by its best garment) and on the top 10 garments.

    python -m benchmarks.bench_lookup [--garments 250000 --photos 45000] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from benchmarks.common import write_results
from devstack.servers import start_chroma
from fashionrag.collection import GARMENT_EF_SEARCH
from fashionrag.collection_store import CollectionReader, Collections, Row, connect
from fashionrag.colours import COLOURS
from fashionrag.fashionpedia import GARMENTS
from fashionrag.model_info import ModelInfo
from query_service.search import OVERFETCH, SearchCore
from query_service.search_types import SearchQuery

CACHE = Path("/tmp/lookup-bench")
DIM = 512
STYLES = 300  # cluster centres: the looks photos share
TOP = "top, t-shirt, sweatshirt"
K = 10

# Relative garment frequencies, roughly Fashionpedia train's box counts (shoes come in pairs;
# tops, dresses, pants common; umbrellas, leg warmers rare).
CATEGORY_WEIGHTS: dict[str, float] = {
    "shirt, blouse": 6.2,
    TOP: 16.5,
    "sweater": 1.5,
    "cardigan": 1.1,
    "jacket": 7.8,
    "vest": 0.7,
    "pants": 12.4,
    "shorts": 2.7,
    "skirt": 5.0,
    "coat": 3.1,
    "dress": 18.7,
    "jumpsuit": 0.9,
    "cape": 0.15,
    "glasses": 4.9,
    "hat": 2.5,
    "headband, head covering, hair accessory": 3.5,
    "tie": 0.35,
    "glove": 0.3,
    "watch": 3.4,
    "belt": 6.8,
    "leg warmer": 0.1,
    "tights, stockings": 4.3,
    "sock": 0.6,
    "shoe": 46.0,
    "bag, wallet": 7.2,
    "scarf": 1.4,
    "umbrella": 0.1,
}
COLOUR_WEIGHTS: dict[str, float] = {
    "black": 24,
    "white": 16,
    "grey": 8,
    "beige": 7,
    "brown": 6,
    "red": 5,
    "pink": 4,
    "orange": 2,
    "yellow": 2,
    "green": 4,
    "blue": 12,
    "navy": 6,
    "purple": 2,
}
assert set(CATEGORY_WEIGHTS) == set(GARMENTS) and set(COLOUR_WEIGHTS) == set(COLOURS)


@dataclass
class Data:
    """The generated photos and garments: vectors and the metadata columns the filters read."""

    photo_vectors: np.ndarray
    garment_vectors: np.ndarray
    garment_photo: np.ndarray  # photo index of each garment
    category: np.ndarray  # index into GARMENTS
    colour: np.ndarray  # index into COLOURS
    colour2: np.ndarray  # index into COLOURS, -1: none
    categories: np.ndarray  # the concept directions, to aim queries with
    colours: np.ndarray

    @property
    def photo_ids(self) -> list[str]:
        return [f"train-{i}" for i in range(len(self.photo_vectors))]

    @property
    def garment_ids(self) -> list[str]:
        return [f"train-{p}-{g}" for g, p in enumerate(self.garment_photo.tolist())]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def generate(garments: int, photos: int, seed: int) -> Data:
    """Clustered unit vectors: each garment mixes its category, its colours, its photo's style
    (one of STYLES centres) and noise, so neighbours share concepts as CLIP's do."""
    rng = np.random.default_rng(seed)
    categories = unit(rng.standard_normal((len(GARMENTS), DIM), dtype=np.float32))
    colours = unit(rng.standard_normal((len(COLOURS), DIM), dtype=np.float32))
    styles = unit(rng.standard_normal((STYLES, DIM), dtype=np.float32))
    photo_style = rng.integers(0, STYLES, photos)
    # Every photo has at least one garment; the rest fall on photos at random.
    garment_photo = np.sort(
        np.concatenate([np.arange(photos), rng.integers(0, photos, garments - photos)])
    )
    cw = np.array([CATEGORY_WEIGHTS[c] for c in GARMENTS])
    category = rng.choice(len(GARMENTS), garments, p=cw / cw.sum())
    kw = np.array([COLOUR_WEIGHTS[c] for c in COLOURS])
    colour = rng.choice(len(COLOURS), garments, p=kw / kw.sum())
    colour2 = rng.choice(len(COLOURS), garments, p=kw / kw.sum())
    colour2[(colour2 == colour) | (rng.random(garments) < 0.5)] = -1
    noise = rng.standard_normal((garments, DIM), dtype=np.float32) * np.float32(0.8 / DIM**0.5)
    second = np.where(colour2[:, None] >= 0, colours[np.maximum(colour2, 0)], 0)
    garment_vectors = unit(
        categories[category]
        + 0.5 * colours[colour]
        + 0.25 * second
        + 0.7 * styles[photo_style[garment_photo]]
        + noise
    )
    sums = np.zeros((photos, DIM), dtype=np.float32)
    np.add.at(sums, garment_photo, garment_vectors)
    photo_noise = rng.standard_normal((photos, DIM), dtype=np.float32) * np.float32(0.5 / DIM**0.5)
    photo_vectors = unit(unit(sums) + styles[photo_style] + photo_noise)
    return Data(
        photo_vectors,
        garment_vectors,
        garment_photo,
        category,
        colour,
        colour2,
        categories,
        colours,
    )


# --- The lookups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """One garment of a lookup: a category and a colour, primary only or primary-or-secondary."""

    category: str
    colour: str
    secondary: bool = False


@dataclass(frozen=True)
class Lookup:
    """A search the query service would run: garments wanted, the query aimed at them; `text`,
    where set, is what a person types for it (the query service matches a colour as primary or
    secondary, so only such lookups have one)."""

    name: str
    wants: tuple[Want, ...]
    text: str = ""

    def mask(self, data: Data) -> np.ndarray:
        """Which garments pass the filter (the exact search's truth)."""
        keep = np.zeros(len(data.category), dtype=bool)
        for w in self.wants:
            c, k = GARMENTS.index(w.category), COLOURS.index(w.colour)
            hit = data.colour == k
            if w.secondary:
                hit |= data.colour2 == k
            keep |= (data.category == c) & hit
        return keep

    def where(self, *, with_category: bool = True, kind: bool = False) -> dict[str, Any]:
        """ChromaDB's `where` for this lookup (per-category collections leave category out)."""
        clauses = []
        for w in self.wants:
            colour: dict[str, Any] = (
                {"$or": [{"colour": w.colour}, {"colour2": w.colour}]}
                if w.secondary
                else {"colour": w.colour}
            )
            parts = [{"category": w.category}, colour] if with_category else [colour]
            clauses.append(parts[0] if len(parts) == 1 else {"$and": parts})
        where = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        return {"$and": [{"kind": "garment"}, where]} if kind else where

    def where_compound(self) -> dict[str, Any]:
        """The same filter on the compound keys `garment` ("<category>/<colour>") and `garment2`
        (with the secondary colour): one small equality or $in instead of an $and of two."""
        primary = [compound(w.category, w.colour) for w in self.wants]
        secondary = [compound(w.category, w.colour) for w in self.wants if w.secondary]

        def one_of(key: str, values: list[str]) -> dict[str, Any]:
            return {key: values[0]} if len(values) == 1 else {key: {"$in": values}}

        where = one_of("garment", primary)
        return {"$or": [where, one_of("garment2", secondary)]} if secondary else where

    def accepts(self, meta: dict[str, Any]) -> bool:
        """The same filter applied client-side to a result's metadata."""
        return any(
            meta.get("category") == w.category
            and (
                meta.get("colour") == w.colour or (w.secondary and meta.get("colour2") == w.colour)
            )
            for w in self.wants
        )

    def queries(self, data: Data, n: int, seed: int) -> np.ndarray:
        """`n` distinct query vectors aimed at the wanted garments, as a text embedding would."""
        rng = np.random.default_rng(seed)
        aim = sum(
            data.categories[GARMENTS.index(w.category)]
            + 0.5 * data.colours[COLOURS.index(w.colour)]
            for w in self.wants
        )
        noise = rng.standard_normal((n, DIM), dtype=np.float32) * np.float32(1.0 / DIM**0.5)
        return unit(unit(np.asarray(aim)) + noise)


LOOKUPS = (
    Lookup("red tops", (Want(TOP, "red"),)),
    Lookup(
        "red tops, primary or secondary colour",
        (Want(TOP, "red", secondary=True),),
        "red tops",
    ),
    Lookup("red tops and blue jeans", (Want(TOP, "red"), Want("pants", "blue"))),
    Lookup(
        "red tops and blue jeans, primary or secondary",
        (Want(TOP, "red", secondary=True), Want("pants", "blue", secondary=True)),
        "red tops and blue jeans",
    ),
)


def compound(category: str, colour: str) -> str:
    return f"{category}/{colour}"


def best_photos(ids: Sequence[str], distances: Sequence[float], k: int) -> list[str]:
    """The first `k` distinct photos of garment hits in ascending distance (best garment wins)."""
    photos: dict[str, float] = {}
    for gid, d in zip(ids, distances, strict=True):
        photo = gid.rsplit("-", 1)[0]
        if photo not in photos:
            photos[photo] = d
            if len(photos) == k:
                break
    return list(photos)


@dataclass
class Truth:
    """Exact answers for one lookup's queries: top garments, top photos, hits to reach k photos."""

    garments: list[list[str]]
    photos: list[list[str]]
    hits_for_k: list[int]
    matching: int


def hits_for_k(data: Data, order: np.ndarray) -> int:
    """How many garments, in the order given, until the k-th distinct photo appears."""
    _, first = np.unique(data.garment_photo[order], return_index=True)
    return int(np.sort(first)[K - 1]) + 1 if len(first) >= K else len(order)


def unfiltered_hits(data: Data, queries: np.ndarray, category: str | None) -> list[int]:
    """hits_for_k in exact order under a category-only filter, or none."""
    keep = (
        np.arange(len(data.category))
        if category is None
        else np.flatnonzero(data.category == GARMENTS.index(category))
    )
    return [
        hits_for_k(data, keep[np.argsort(-row)]) for row in queries @ data.garment_vectors[keep].T
    ]


def exact(data: Data, lookup: Lookup, queries: np.ndarray, ids: list[str]) -> Truth:
    keep = np.flatnonzero(lookup.mask(data))
    sims = queries @ data.garment_vectors[keep].T
    garments, photos, hits = [], [], []
    for row in sims:
        order = keep[np.argsort(-row)]
        ranked = [ids[i] for i in order[: 50 * K]]
        garments.append(ranked[:K])
        photos.append(best_photos(ranked, [0.0] * len(ranked), K))
        hits.append(hits_for_k(data, order))
    return Truth(garments, photos, hits, len(keep))


# --- The layouts ------------------------------------------------------------------------------


Answer = tuple[list[str], list[float], int]  # garment ids, distances, hits fetched


def query(collection: Any, vector: np.ndarray, n: int, where: dict[str, Any] | None) -> Answer:
    got = collection.query(
        query_embeddings=[vector], n_results=n, where=where, include=["distances"]
    )
    ids, distances = got["ids"][0], got["distances"][0]
    return ids, distances, len(ids)


def to_photos(ask: Callable[[int], Answer]) -> Answer:
    """Ask for 4k garment hits, then 8 times more while that gives fewer than k distinct photos
    and the collection had more to give."""
    n, fetched = 4 * K, 0
    while True:
        ids, distances, got = ask(n)
        fetched += got
        if len(best_photos(ids, distances, K)) >= K or got < n or n >= 4096:
            return ids, distances, fetched
        n *= 8


def merge(answers: Sequence[Answer]) -> Answer:
    pairs = sorted(
        (d, i) for ids, distances, _ in answers for i, d in zip(ids, distances, strict=True)
    )
    return [i for _, i in pairs], [d for d, _ in pairs], sum(a[2] for a in answers)


@dataclass
class Layout:
    """One way to store and ask: a name, its parameters, and how a lookup runs."""

    name: str
    params: str
    run: Callable[[Lookup, np.ndarray], Answer]
    setup: Callable[[], None] = field(default=lambda: None)
    applies: Callable[[Lookup], bool] = field(default=lambda lookup: True)


def layouts(client: Any, overfetch: Sequence[int], ef_search: int) -> list[Layout]:
    one = client.get_collection("one")
    garments = client.get_collection("garments")
    m32 = client.get_collection("garments_m32")
    per = {c: client.get_collection(slug(c)) for c in GARMENTS}

    def single(lookup: Lookup, v: np.ndarray) -> Answer:
        return to_photos(lambda n: query(one, v, n, lookup.where(kind=True)))

    def separate(collection: Any) -> Callable[[Lookup, np.ndarray], Answer]:
        return lambda lookup, v: to_photos(lambda n: query(collection, v, n, lookup.where()))

    def partitioned(lookup: Lookup, v: np.ndarray) -> Answer:
        # One query per wanted category, merged by distance: what the query service would do.
        def ask(n: int) -> Answer:
            return merge(
                [
                    query(
                        per[w.category], v, n, Lookup(lookup.name, (w,)).where(with_category=False)
                    )
                    for w in lookup.wants
                ]
            )

        return to_photos(ask)

    def over(n_over: int) -> Callable[[Lookup, np.ndarray], Answer]:
        def run(lookup: Lookup, v: np.ndarray) -> Answer:
            got = garments.query(
                query_embeddings=[v], n_results=n_over, include=["metadatas", "distances"]
            )
            kept = [
                (i, d)
                for i, d, m in zip(
                    got["ids"][0], got["distances"][0], got["metadatas"][0], strict=True
                )
                if lookup.accepts(m)
            ]
            ids, distances = [i for i, _ in kept], [d for _, d in kept]
            if len(best_photos(ids, distances, K)) >= K:
                return ids, distances, n_over
            ids, distances, fetched = separate(garments)(lookup, v)
            return ids, distances, n_over + fetched

        return run

    out = [
        Layout(
            "(a) one collection",
            "photos+garments, where kind+category+colour, ef_search=100",
            single,
        ),
        Layout(
            "(a) one collection, no kind",
            "photos+garments, where category+colour (photos lack category), ef_search=100",
            lambda lookup, v: to_photos(lambda n: query(one, v, n, lookup.where())),
        ),
        Layout(
            "(b) separate collections",
            f"garments alone, where category+colour, M=16 ef_search={ef_search}",
            separate(garments),
        ),
        Layout(
            "(f) compound key",
            "garments alone, where garment=<category>/<colour> (garment2 for the secondary)",
            lambda lookup, v: to_photos(lambda n: query(garments, v, n, lookup.where_compound())),
        ),
        Layout(
            "(e) one collection per category",
            "27 garment collections, where colour, ef_search=100",
            partitioned,
        ),
    ]
    out += [
        Layout(
            f"(c) over-fetch {n}",
            f"unfiltered n_results={n}, filter client-side, else (b)",
            over(n),
        )
        for n in overfetch
    ]
    out.append(
        Layout(
            "(d) separate, M=32",
            "as (b), max_neighbors=32 ef_construction=200 ef_search=100",
            separate(m32),
        )
    )
    service = ServiceWay(client.get_collection("photos"), garments)
    out.append(
        Layout(
            "(g) the query service's search",
            "SearchCore on (c)'s garments and the photos: over-fetch "
            f"{OVERFETCH}, else a compound-key query per term, then the photo records read",
            service.run,
            applies=lambda lookup: bool(lookup.text),
        )
    )
    return out


class BenchReader(CollectionReader):
    """The query service's collection reader over the bench's photos and garments (the
    contract's metadata keys, but no model recorded): handed the two collections instead of
    opening and checking them; counts the garment rows it fetches."""

    def __init__(self, photos: Any, garments: Any) -> None:
        super().__init__("", "bench", model_info=lambda: ModelInfo("bench", "none", DIM))
        self._collections = Collections(photos, garments)
        self._garment_count = garments.count()
        self.fetched = 0

    def open(self) -> Collections:
        assert self._collections is not None
        return self._collections

    def query_garments(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]:
        rows = super().query_garments(vector, n_results, where)
        self.fetched += len(rows)
        return rows


class GivenVector:
    """The text vector cache's place in SearchCore: answers every text with the query vector of
    the moment (the lookup is what is measured, not the embedder)."""

    def __init__(self) -> None:
        self.now: np.ndarray = np.zeros(DIM, dtype=np.float32)

    def vector(self, text: str, timeout: float | None = None) -> np.ndarray:
        return self.now


class ServiceWay:
    """The whole lookup of the query service's search: SearchCore.search on a lookup's text."""

    def __init__(self, photos: Any, garments: Any) -> None:
        self.reader = BenchReader(photos, garments)
        self.texts = GivenVector()
        self.core = SearchCore(cast(Any, None), self.reader, cast(Any, self.texts))

    def run(self, lookup: Lookup, v: np.ndarray) -> Answer:
        self.texts.now = v
        self.reader.fetched = 0
        outcome = self.core.search(SearchQuery(text=lookup.text, top_k=K))
        matched = sorted((m.distance, m.id) for hit in outcome.hits for m in hit.garments)
        return [i for _, i in matched], [d for d, _ in matched], self.reader.fetched


# --- Loading, once per sizes and seed -------------------------------------------------------


def slug(category: str) -> str:
    return "g_" + "".join(ch if ch.isalnum() else "_" for ch in category)[:40]


def garment_metadata(data: Data, rng: np.random.Generator) -> list[dict[str, Any]]:
    boxes = rng.uniform(0, 1, (len(data.category), 4))
    out = []
    for g in range(len(data.category)):
        p = int(data.garment_photo[g])
        x0, x1 = sorted((boxes[g, 0] * 640, boxes[g, 1] * 640))
        y0, y1 = sorted((boxes[g, 2] * 960, boxes[g, 3] * 960))
        meta: dict[str, Any] = {
            "kind": "garment",
            "category": GARMENTS[data.category[g]],
            "colour": COLOURS[data.colour[g]],
            "photo": f"train-{p}",
            "image_id": p,
            "x0": round(x0),
            "y0": round(y0),
            "x1": round(x1),
            "y1": round(y1),
            "area": round((x1 - x0) * (y1 - y0) / (640 * 960), 4),
        }
        if data.colour2[g] >= 0:
            meta["colour2"] = COLOURS[data.colour2[g]]
        out.append(meta)
    return out


def photo_metadata(data: Data) -> list[dict[str, Any]]:
    names: list[set[str]] = [set() for _ in range(len(data.photo_vectors))]
    for p, c in zip(data.garment_photo.tolist(), data.category.tolist(), strict=True):
        names[p].add(GARMENTS[c])
    return [
        {
            "kind": "photo",
            "image_id": p,
            "split": "train",
            "path": f"/data/images/train/{p}.jpg",
            "width": 640,
            "height": 960,
            "categories": sorted(names[p]),
        }
        for p in range(len(names))
    ]


def add(
    client: Any,
    name: str,
    ids: list[str],
    vectors: np.ndarray,
    metas: list[dict[str, Any]],
    hnsw: dict[str, Any] | None = None,
) -> None:
    collection = client.create_collection(
        name,
        configuration={"hnsw": {"space": "cosine", **(hnsw or {})}},
        embedding_function=None,
    )
    step = min(5000, client.get_max_batch_size())
    for s in range(0, len(ids), step):
        collection.add(
            ids=ids[s : s + step], embeddings=vectors[s : s + step], metadatas=metas[s : s + step]
        )


def load(client: Any, data: Data, seed: int, done: Path, ef_search: int) -> dict[str, float]:
    """Create every collection not yet loaded (the garments with `ef_search`, which ChromaDB
    takes at creation or when it next loads the index); seconds per collection group, kept in
    `done`."""
    seconds: dict[str, float] = json.loads(done.read_text()) if done.exists() else {}
    existing = {c.name for c in client.list_collections()}
    gmeta = garment_metadata(data, np.random.default_rng(seed + 1))
    pmeta = photo_metadata(data)
    gids, pids = data.garment_ids, data.photo_ids

    def group(name: str, fn: Callable[[], None], names: Sequence[str]) -> None:
        if name in seconds:
            return
        for n in names:  # a group cut short by a previous run starts again
            if n in existing:
                client.delete_collection(n)
        print(f"loading {name} ...", flush=True)
        started = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"  {seconds[name]:.0f} s", flush=True)
        done.write_text(json.dumps(seconds, indent=1))

    group(
        "garments",
        lambda: add(
            client, "garments", gids, data.garment_vectors, gmeta, {"ef_search": ef_search}
        ),
        ["garments"],
    )
    group(
        "photos",
        lambda: add(client, "photos", pids, data.photo_vectors, pmeta),
        ["photos"],
    )
    group(
        "one",
        lambda: add(
            client,
            "one",
            pids + gids,
            np.concatenate([data.photo_vectors, data.garment_vectors]),
            pmeta + gmeta,
        ),
        ["one"],
    )

    def partition() -> None:
        for c, category in enumerate(GARMENTS):
            rows = np.flatnonzero(data.category == c)
            add(
                client,
                slug(category),
                [gids[i] for i in rows],
                data.garment_vectors[rows],
                [gmeta[i] for i in rows],
            )

    group("per category", partition, [slug(c) for c in GARMENTS])
    group(
        "garments_m32",
        lambda: add(
            client,
            "garments_m32",
            gids,
            data.garment_vectors,
            gmeta,
            {"max_neighbors": 32, "ef_construction": 200},
        ),
        ["garments_m32"],
    )

    def compound_keys() -> None:
        # Metadata only: an update merges these keys into the garment records, the vectors stay.
        garments = client.get_collection("garments")
        step = min(5000, client.get_max_batch_size())
        for start in range(0, len(gids), step):
            rows = range(start, min(start + step, len(gids)))
            garments.update(
                ids=gids[start : rows.stop],
                metadatas=[
                    {
                        "garment": compound(gmeta[i]["category"], gmeta[i]["colour"]),
                        **(
                            {"garment2": compound(gmeta[i]["category"], gmeta[i]["colour2"])}
                            if "colour2" in gmeta[i]
                            else {}
                        ),
                    }
                    for i in rows
                ],
            )

    group("compound keys on garments", compound_keys, [])
    return seconds


# --- Measuring --------------------------------------------------------------------------------


def ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


@dataclass
class Figures:
    """One layout's figures for one lookup."""

    layout: Layout
    lookup: Lookup
    seconds: list[float] = field(default_factory=list)
    photo_hits: int = 0
    garment_hits: int = 0
    fetched: int = 0

    @property
    def photo_recall(self) -> float:
        return self.photo_hits / (len(self.seconds) * K)

    @property
    def garment_recall(self) -> float:
        return self.garment_hits / (len(self.seconds) * K)

    def time(self, v: np.ndarray, want_photos: list[str], want_garments: list[str]) -> None:
        started = time.perf_counter()
        ids, distances, got = self.layout.run(self.lookup, v)
        self.seconds.append(time.perf_counter() - started)
        self.photo_hits += len(set(best_photos(ids, distances, K)) & set(want_photos))
        self.garment_hits += len(set(ids[:K]) & set(want_garments))
        self.fetched += got


BLOCK = 10


def measure(
    chosen: Sequence[Layout], lookup: Lookup, queries: np.ndarray, truth: Truth
) -> list[Figures]:
    """Every layout answers the same queries, in interleaved blocks of BLOCK queries, so that
    what others do on the shared machine meanwhile falls on all layouts alike."""
    rows = [Figures(layout, lookup) for layout in chosen if layout.applies(lookup)]
    for start in range(0, len(queries), BLOCK):
        for row in rows:
            row.layout.setup()
            # Not timed: after a start or a configuration change the index is read afresh.
            row.layout.run(lookup, queries[start])
            for i in range(start, min(start + BLOCK, len(queries))):
                row.time(queries[i], truth.photos[i], truth.garments[i])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_lookup")
    parser.add_argument("--garments", type=int, default=250_000)
    parser.add_argument("--photos", type=int, default=45_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overfetch", type=int, nargs="*", default=[200, 1000])
    parser.add_argument(
        "--ef-search",
        type=int,
        default=GARMENT_EF_SEARCH,
        help="the garment collection's HNSW ef_search (the index's: GARMENT_EF_SEARCH; "
        "ChromaDB's default: 100); set before "
        "the index is first read, as ChromaDB applies it only when it loads an index",
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="layout name prefixes to measure, e.g. '(b)'"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    data = generate(args.garments, args.photos, args.seed)
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    home = CACHE / f"g{args.garments}-p{args.photos}-s{args.seed}"
    home.mkdir(parents=True, exist_ok=True)
    chroma = start_chroma(home / "chroma", home / "chroma.log", timeout=120)
    url = chroma.http
    try:
        client = connect(url)
        loaded = load(client, data, args.seed, home / "loaded.json", args.ef_search)
        # Before any query reads the index: ChromaDB applies ef_search when it loads an index,
        # and a change to a loaded one is stored but not used (measured: recall unchanged).
        client.get_collection("garments").modify(
            configuration={"hnsw": {"ef_search": args.ef_search}}
        )
        gids = data.garment_ids
        plan = [
            (lookup, qs, exact(data, lookup, qs, gids))
            for i, lookup in enumerate(LOOKUPS)
            for qs in [lookup.queries(data, args.queries, args.seed + 100 + i)]
        ]
        chosen = [
            layout
            for layout in layouts(client, args.overfetch, args.ef_search)
            if not args.only or any(layout.name.startswith(p) for p in args.only)
        ]
        rows = []
        for lookup, qs, truth in plan:
            for row in measure(chosen, lookup, qs, truth):
                rows.append(row)
                print(
                    f"{row.layout.name:34} {lookup.name:40} p50 {ms(row.seconds, 50):6.1f} ms "
                    f"p95 {ms(row.seconds, 95):6.1f} ms  recall photos {row.photo_recall:.3f} "
                    f"garments {row.garment_recall:.3f}  hits {row.fetched / len(qs):.0f}",
                    flush=True,
                )
        # The unfiltered garment query, for scale.
        garments = client.get_collection("garments")
        qs = plan[0][1]
        for v in qs[:5]:
            query(garments, v, K, None)
        bare = []
        for v in qs:
            t = time.perf_counter()
            query(garments, v, K, None)
            bare.append(time.perf_counter() - t)
    finally:
        chroma.stop()

    goal = [
        r
        for r in rows
        if r.lookup is LOOKUPS[0] and r.photo_recall >= 0.99 and r.garment_recall >= 0.99
    ]
    winner = min(goal, key=lambda r: ms(r.seconds, 50)) if goal else None
    table = [
        [
            r.layout.name,
            r.lookup.name,
            f"{ms(r.seconds, 50):.1f}",
            f"{ms(r.seconds, 95):.1f}",
            f"{r.photo_recall:.3f}",
            f"{r.garment_recall:.3f}",
            f"{r.fetched / len(r.seconds):.0f}",
        ]
        for r in rows
    ]
    hits = {lookup.name: truth for lookup, _, truth in plan}
    wide = {
        "tops of any colour": unfiltered_hits(data, plan[0][1], TOP),
        "no filter": unfiltered_hits(data, plan[0][1], None),
    }
    notes = [
        f"- Unfiltered top-{K} garment query on the garment collection (ef_search "
        f"{args.ef_search}), for scale: p50 "
        f"{ms(bare, 50):.1f} ms, p95 {ms(bare, 95):.1f} ms.",
        *(
            f"- {name}: {t.matching} garments pass the filter; garment hits needed for {K} "
            f"distinct photos in exact order: median {statistics.median(t.hits_for_k):.0f}, "
            f"max {max(t.hits_for_k)}."
            for name, t in hits.items()
        ),
        *(
            f"- The 'red tops' queries under {name}: garment hits needed for {K} distinct "
            f"photos in exact order: median {statistics.median(h):.0f}, max {max(h)}."
            for name, h in wide.items()
        ),
        "- Each lookup asks for 4x10 garment hits, then 8x more while that gives fewer than 10 "
        "distinct photos; `hits` is the mean garments fetched per lookup.",
        "- Layouts: "
        + "; ".join(
            f"{layout.name}: {layout.params}"
            for layout in dict((r.layout.name, r.layout) for r in rows).values()
        )
        + ".",
        "- All layouts share one `chroma run` data directory, hence one SQLite metadata table "
        "whose index is (key, value) across every collection: a `where` clause reads every "
        "row of the database with that key and value, then keeps its collection's. So "
        "category and colour clauses here read the garments of all four garment layouts "
        "(garments, one, garments_m32, per category), about 4x what a store holding one "
        "layout would read; the compound key `garment` lives only in `garments` and the "
        "over-fetch filters client-side, so those two are not inflated.",
        "- Loading (seconds, once per sizes and seed, cached in "
        f"{home}): " + ", ".join(f"{k} {v:.0f}" for k, v in loaded.items()) + ".",
        (
            f"- Winner for 'red tops' (recall@10 >= 0.99 on photos and garments, lowest p50): "
            f"{winner.layout.name} ({winner.layout.params}), p50 {ms(winner.seconds, 50):.1f} ms."
            if winner
            else "- No layout held recall@10 >= 0.99 for 'red tops'."
        ),
        *(
            f"- Goal, the query service's own lookup for '{r.lookup.text}' "
            f"({r.lookup.name}): p50 {ms(r.seconds, 50):.1f} ms (<= 25), recall@{K} "
            f"{min(r.photo_recall, r.garment_recall):.3f} (>= 0.99): "
            + (
                "met."
                if ms(r.seconds, 50) <= 25 and min(r.photo_recall, r.garment_recall) >= 0.99
                else "NOT met."
            )
            for r in rows
            if r.layout.name.startswith("(g)")
        ),
    ]
    print(
        write_results(
            "lookup",
            "Filtered garment lookups in ChromaDB (ms per lookup, one caller)",
            f"{args.garments} garment and {args.photos} photo vectors of {DIM} dimensions "
            f"(generated, unit length, {STYLES} style clusters), cosine space, {args.queries} "
            f"distinct query vectors per lookup, top {K} photos, recall@{K} against exact "
            "search under the same filter",
            [
                "layout",
                "lookup",
                "p50",
                "p95",
                f"recall@{K} photos",
                f"recall@{K} garments",
                "hits",
            ],
            table,
            notes,
        )
    )
    if winner:
        print(f"winner: {winner.layout.name} ({winner.layout.params})")


if __name__ == "__main__":
    main()
