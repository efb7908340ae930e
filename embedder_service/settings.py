"""Typed settings of the embedder service (flags, or FASHIONRAG_* environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from fashionrag.settings import ServerSettings, settings_config

Device = str  # "auto", "cpu", "cuda", "cuda:1"...
Precision = Literal["auto", "fp32", "fp16", "bf16"]


class ModelSettings(BaseSettings):
    """Which model to load and how; shared by the server and the benchmarks."""

    model_config = settings_config("python -m embedder_service")

    model: str = Field(
        "ViT-B-32",
        description="an OpenCLIP model name, hf-hub:<org>/<repo>, or a model-config .json path",
    )
    pretrained: str = Field(
        "laion2b_s34b_b79k",
        description="a pretrained tag, a local checkpoint file, or 'none' (seeded random weights)",
    )
    device: Device = Field("auto", description="auto (cuda when present, else cpu), cpu, cuda[:N]")
    precision: Precision = Field(
        "auto",
        description="auto (fp16 on CUDA, bf16 on a CPU with AMX, else fp32), fp32, fp16 or bf16",
    )
    seed: int = Field(0, description="seed of the random weights when --pretrained none")
    cache_dir: str | None = Field(None, description="where downloaded weights are kept")


class EmbedderSettings(ModelSettings, ServerSettings):
    """Settings of `python -m embedder_service`."""

    model_config = settings_config("python -m embedder_service")

    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0: any free port)")
    max_batch_items: int = Field(
        256,
        ge=1,
        description="most texts, or images and their boxes, one request may carry",
    )
    max_boxes_per_image: int = Field(
        64, ge=0, description="most boxes (regions to embed too) one image may carry"
    )
    max_batch_size: int = Field(
        32, ge=1, description="most items in one forward pass (requests are batched together)"
    )
    # 0: a request that finds the model idle runs at once (a lone search text paid the whole
    # window: 64 -> 45 ms per text through the service on 2 cores), and those that arrive while
    # a pass runs still share the next one.
    max_delay_ms: float = Field(
        0.0, ge=0, description="how long a request waits for others to share its forward pass"
    )
    max_queue: int = Field(
        1024, ge=1, description="most items waiting per kind; past it RESOURCE_EXHAUSTED"
    )
    jpeg_draft: bool = Field(
        True, description="decode JPEGs at a reduced scale that still covers the model's input"
    )
    gpu_decode: bool = Field(
        False, description="decode JPEGs with torchvision on the model's device (CUDA)"
    )
    max_text_chars: int = Field(
        10_000,
        ge=1,
        description="longest text accepted, in characters (tokens past the "
        "model's context are cut anyway)",
    )
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="largest decoded image accepted (decompression-bomb guard)"
    )
    decode_workers: int = Field(
        0, ge=0, description="threads that decode and preprocess images (0: one per core)"
    )
    grace_seconds: float = Field(
        10.0, ge=0, description="drain time for calls in flight on SIGTERM"
    )
