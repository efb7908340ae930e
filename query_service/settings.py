"""Typed settings of the query service and of its commands (flags, or FASHIONRAG_* environment
variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fashionrag.collection import DEFAULT_COLLECTION
from fashionrag.settings import (
    CallerSettings,
    EmbedderCallerSettings,
    ServerSettings,
    settings_config,
)


class QuerySettings(EmbedderCallerSettings, ServerSettings):
    """Settings of `python -m query_service serve`."""

    model_config = settings_config("python -m query_service serve")

    port: int = Field(50052, ge=0, le=65535, description="gRPC port")
    http_port: int = Field(
        8080, ge=0, le=65535, description="HTTP port: JSON API, images, gallery (0: no HTTP)"
    )
    embedder: str = Field(
        "127.0.0.1:50051", description="embedder address, host:port or dns:///name:port"
    )
    chroma: str = Field("http://127.0.0.1:8000", description="ChromaDB server URL")
    collection: str = Field(DEFAULT_COLLECTION, description="ChromaDB collection to search")
    embed_timeout: float = Field(30.0, gt=0, description="deadline of each embedder call, s")
    auto_category: Literal["on", "off"] = Field(
        "on",
        description="on: the garments and colours the text names ('red tops') become filters",
    )
    cache_size: int = Field(1024, ge=0, description="text vectors kept for repeated queries")
    grace_seconds: float = Field(5.0, ge=0, description="drain time for calls in flight on SIGTERM")
    max_searches: int = Field(
        32,
        ge=1,
        description="searches in flight at once (gRPC and HTTP together); past it a search is "
        "refused at once with RESOURCE_EXHAUSTED (HTTP 429) rather than queued",
    )
    images_dir: str = Field(
        "./images_data",
        description="the indexer's --images-dir: /images/<id> serves only regular files inside it",
    )
    http_body_timeout: float = Field(
        10.0, gt=0, description="seconds an HTTP upload may take to arrive in full (then 408)"
    )


class ClientSettings(CallerSettings):
    """Where the commands that call the query service find it."""

    model_config = settings_config("python -m query_service")

    address: str = Field(
        "127.0.0.1:50052", description="the query service, host:port or dns:///name:port"
    )
    timeout: float = Field(30.0, gt=0, description="seconds to wait for each answer")


class SearchSettings(ClientSettings):
    """The defaults of `python -m query_service search` (its flags are parsed in cli.py, since
    Fashionpedia's category names hold commas that a generic list parser would split)."""

    model_config = settings_config("python -m query_service search")

    top_k: int = Field(5, ge=1, le=100, description="how many results")
    # Named by its variable: a field called `json` would shadow pydantic's own method.
    json_output: bool = Field(
        False,
        validation_alias="FASHIONRAG_JSON",
        description="print one JSON object instead of a table",
    )


class EvalSettings(ClientSettings):
    """Settings of `python -m query_service eval`."""

    model_config = settings_config("python -m query_service eval")

    chroma: str = Field("http://127.0.0.1:8000", description="ChromaDB server URL")
    collection: str = Field(DEFAULT_COLLECTION, description="ChromaDB collection to score")
    top_k: int = Field(10, ge=1, le=100, description="k of precision@k")
    garment_queries: int = Field(
        12, ge=0, le=200, description="how many colour-and-garment queries to score"
    )
    out: str | None = Field(None, description="also write the markdown table to this file")
