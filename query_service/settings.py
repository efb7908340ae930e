"""Typed settings of the query service (flags, or FASHIONRAG_* environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from fashionrag.collection import DEFAULT_COLLECTION
from fashionrag.settings import settings_config


class QuerySettings(BaseSettings):
    """Settings of `python -m query_service serve`."""

    model_config = settings_config("python -m query_service serve")

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all interfaces)")
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
        "on", description="on: a category the text names ('red tops') restricts the results"
    )
    cache_size: int = Field(1024, ge=0, description="text vectors kept for repeated queries")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus metrics port on --host (0: no metrics)"
    )
    grace_seconds: float = Field(5.0, ge=0, description="drain time for calls in flight on SIGTERM")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field("text", description="text or json lines")
