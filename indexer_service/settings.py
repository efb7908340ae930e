"""Typed settings of the indexer job (flags, or FASHIONRAG_* environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fashionrag.collection import DEFAULT_COLLECTION
from fashionrag.fashionpedia import HUB_DATASET
from fashionrag.settings import EmbedderCallerSettings, settings_config


class IndexerSettings(EmbedderCallerSettings):
    """Settings of `python -m indexer_service`."""

    model_config = settings_config("python -m indexer_service")

    embedder: str = Field(
        "127.0.0.1:50051", description="embedder address, host:port or dns:///name:port"
    )
    chroma: str = Field("http://127.0.0.1:8000", description="ChromaDB server URL")
    collection: str = Field(DEFAULT_COLLECTION, description="ChromaDB collection to write")
    dataset: str = Field(
        HUB_DATASET,
        description="a Hugging Face hub id or a local directory "
        "with the same layout (data/<split>-*.parquet)",
    )
    split: str = Field("train", description="the split to index: train or val")
    limit: int = Field(1000, ge=0, description="index at most this many rows (0: the whole split)")
    offset: int = Field(0, ge=0, description="skip this many rows first")
    shard: str = Field("0/1", description="I/N: take every N-th row from row I, for N jobs at once")
    images_dir: str = Field("./images_data", description="where the original image files are saved")
    regions: Literal["garments", "none"] = Field(
        "garments",
        description="garments: a record per garment box too (the 27 garment categories, with "
        "category, box, area share and colour); none: photo records only (several times faster)",
    )
    batch_size: int = Field(32, ge=1, description="images per embed request and upsert")
    concurrency: int = Field(2, ge=1, description="embed requests in flight at once")
    retry_seconds: float = Field(
        600.0,
        ge=0,
        description="how long one operation is retried through transient faults (embedder "
        "restarting, ChromaDB away); it bounds the operation: embed deadlines are cut to what "
        "is left of it, so a backend gone for good ends the run about this long after",
    )
    failures_file: str | None = Field(
        None,
        description="JSON lines of the failed records, appended to by every run and shard "
        "(default <images-dir>/failures-<split>.jsonl)",
    )
    recreate: bool = Field(False, description="drop the collection first (e.g. to change model)")
    embedder_wait: float = Field(
        300.0, ge=0, description="seconds to wait for the embedder to be ready"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field("text", description="text or json lines")
