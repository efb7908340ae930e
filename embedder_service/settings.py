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
    text_threads: int = Field(
        0,
        ge=0,
        description="CPU threads for text batches: 0 = measured at start-up (one or all, "
        "whichever runs short texts faster) and re-checked while serving, N = that many for "
        "good; images use every thread",
    )


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
    max_delay_ms: float = Field(
        5.0,
        ge=0,
        description="how long a request waits for others to share its forward pass, counted "
        "from its arrival (a lone caller, whose last batch had no company, does not wait)",
    )
    fixed_delay: bool = Field(
        False,
        description="every batch waits for company until --max-delay-ms after its first "
        "request came, lone callers too (a steady, predictable hold: the tests use it to keep "
        "requests in flight)",
    )
    max_queue: int = Field(
        1024, ge=1, description="most items waiting per kind; past it RESOURCE_EXHAUSTED"
    )
    jpeg_draft: bool = Field(
        True,
        description="decode large images at a reduced size that still covers the model's input "
        "(JPEGs at 1/2 to 1/8 scale while decoding, other formats shrunk right after)",
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
    # 25 Mpx covers a 24 Mpx camera (6000x4000) and a 12 Mpx phone (4032x3024); Fashionpedia's
    # photos are at most a few Mpx. Half the old 50 Mpx halves what one image may cost: a PNG
    # (no reduced decoding) of 25 Mpx is 100 MB of pixels and about a second of a core.
    max_image_pixels: int = Field(
        25_000_000,
        ge=1,
        description="largest image accepted, width x height (a bound on one image's memory and "
        "time, and a decompression-bomb guard)",
    )
    decode_workers: int = Field(
        0, ge=0, description="threads that decode and preprocess images (0: one per core)"
    )
    decode_pixel_budget: int = Field(
        0,
        ge=0,
        description="most pixels being decoded at once, summed over images; a larger image "
        "waits for the others, then runs alone (0: --max-image-pixels)",
    )
    decode_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="how much lower the decode threads' CPU priority is than the model "
        "thread's (Linux nice), so texts keep their latency under image load; 0: the same",
    )
    grace_seconds: float = Field(
        10.0, ge=0, description="drain time for calls in flight on SIGTERM"
    )
