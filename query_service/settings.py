"""Typed settings of the query service (flags, or FASHIONRAG_* environment variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from fashionrag.collection import DEFAULT_COLLECTION
from fashionrag.settings import settings_config


class QuerySettings(BaseSettings):
    """Settings of `python -m query_service serve`."""

    model_config = settings_config("python -m query_service serve")

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all interfaces)")
    port: int = Field(50052, ge=0, le=65535, description="gRPC port")
    embedder: str = Field(
        "127.0.0.1:50051", description="embedder address, host:port or dns:///name:port"
    )
    chroma: str = Field("http://127.0.0.1:8000", description="ChromaDB server URL")
    collection: str = Field(DEFAULT_COLLECTION, description="ChromaDB collection to search")
    embed_timeout: float = Field(30.0, gt=0, description="deadline of each embedder call, s")
    grace_seconds: float = Field(5.0, ge=0, description="drain time for calls in flight on SIGTERM")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
