"""The model behind the embedder: a small interface, and its OpenCLIP implementation.

The server and the engine only know `EmbeddingModel`; another runtime (ONNX, TensorRT) is one more
class here. Only this module and the text tower it runs (`text_tower.py`, `prepacked_blocks.py`)
import torch and open_clip.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from embedder_service.settings import ModelSettings
from embedder_service.text_threads import SHORT_TOKENS, TextThreadChoice, choose_text_threads
from embedder_service.text_tower import CausalTextTower
from fashionrag.errors import ConfigurationError, InvalidArgument
from fashionrag.model_info import ModelInfo

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class EmbeddingModel(Protocol):
    """What the engine needs of a model. Vectors are float32 and L2-normalised."""

    description: ModelInfo

    def embed_texts(self, texts: list[str], company: bool = False) -> tuple[np.ndarray, list[bool]]:
        """Embed texts; return the (N, D) vectors and, per text, whether it was truncated.
        `company`: they come from concurrent callers (see `DynamicBatcher`), whose other work
        may share the cores."""
        ...

    def preprocess(self, image: Image.Image) -> Any:
        """Turn one decoded RGB image into the model's input (runs in the decode workers)."""
        ...

    def embed_images(self, inputs: list[Any]) -> np.ndarray:
        """Embed preprocessed images; return their (N, D) vectors."""
        ...

    def start_helper_thread(self) -> None:
        """Set up a thread that prepares inputs for the model (a decode worker): called once in
        that thread before its first job."""
        ...

    def decode_on_device(self, data: bytes) -> tuple[Any, int, int] | None:
        """Decode and preprocess a JPEG on the model's device; None where that path does not
        apply (not a JPEG), so the caller decodes with Pillow instead. The caller checks the
        image's size from its header first.

        Raises:
            InvalidArgument: the bytes are a JPEG that cannot be decoded.
        """
        ...


def is_random_weights(pretrained: str) -> bool:
    """True when `pretrained` asks for seeded random weights instead of trained ones."""
    return pretrained.strip().lower() in ("", "none", "random")


class OpenClipModel:
    """An OpenCLIP model with its own preprocessing transform and tokenizer."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, description: ModelInfo):
        import torch

        self._torch = torch
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.description = description
        self._device = torch.device(description.device)
        self._input_dtype = {
            "fp32": torch.float32,
            "fp16": torch.float16,
            "bf16": torch.bfloat16,
        }[description.precision]
        normalize = next(
            (t for t in getattr(preprocess, "transforms", []) if hasattr(t, "mean")), None
        )
        self._mean = list(getattr(normalize, "mean", OPENAI_MEAN))
        self._std = list(getattr(normalize, "std", OPENAI_STD))
        # Threads for text batches (torch's own until measured); see embedder_service.text_threads.
        self._text_threads = TextThreadChoice(torch.get_num_threads())
        self._text_tower = self._fastest_text_tower(model, self._device)

    @staticmethod
    def _fastest_text_tower(model: Any, device: Any) -> CausalTextTower | None:
        """The model's text tower on real lengths, on prepacked weights on a CPU; None where it
        must run open_clip's full path."""
        tower = CausalTextTower.of(model)
        if tower is None:
            log.info("text tower is not causal with end-token pooling: texts run on all positions")
            return None
        if device.type != "cpu":
            return replace(tower, pass_cost=None)
        packed = tower.prepacked()
        log.info(
            "text tower runs on real lengths, %s",
            "on prepacked oneDNN weights" if packed is not tower else "on open_clip's own blocks",
        )
        return packed

    @classmethod
    def load(cls, settings: ModelSettings) -> OpenClipModel:
        """Load the model that `settings` names.

        Raises:
            ConfigurationError: the model or its weights cannot be found or downloaded; the
                message names the offline ways out.
        """
        short_openmp_spins()
        import open_clip
        import torch

        name = settings.model
        if name.endswith(".json"):
            config = Path(name)
            if not config.is_file():
                raise ConfigurationError(f"model-config file {name} does not exist")
            # open_clip registers a config under its file's stem.
            open_clip.add_model_config(config)
            name = config.stem
        device = _resolve_device(settings.device, torch)
        precision = _resolve_precision(settings.precision, device)
        random_weights = is_random_weights(settings.pretrained)
        pretrained: str | None = None if random_weights else settings.pretrained
        if name.startswith("hf-hub:"):
            pretrained = None  # the hub repository carries its own weights
        if random_weights:
            log.warning(
                "loading %s with RANDOM weights (seed %d): vectors are deterministic but search "
                "results are meaningless; pass --pretrained TAG or a checkpoint for real use",
                name,
                settings.seed,
            )
            torch.manual_seed(settings.seed)
        try:
            with _seekable_checkpoint(pretrained) as checkpoint:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name,
                    pretrained=checkpoint,
                    precision=precision,
                    device=device,
                    cache_dir=settings.cache_dir,
                )
            tokenizer = open_clip.get_tokenizer(name, cache_dir=settings.cache_dir)
        except Exception as exc:
            raise ConfigurationError(_load_failure_message(settings, exc)) from exc
        model.eval()
        text_cfg = getattr(tokenizer, "context_length", None) or 77
        image_size = preprocess.transforms[0].size if hasattr(preprocess, "transforms") else 0
        if isinstance(image_size, (tuple, list)):
            image_size = image_size[0]
        with torch.inference_mode():
            probe = model.encode_text(tokenizer(["a"]).to(device))
        description = ModelInfo(
            model_name=settings.model if not settings.model.endswith(".json") else name,
            pretrained="none" if random_weights else Path(settings.pretrained).name,
            dimension=int(probe.shape[-1]),
            device=str(device),
            precision=precision,
            context_length=int(text_cfg),
            image_size=int(image_size or 0),
            seed=settings.seed if random_weights else 0,
        )
        log.info("model loaded: %s", description)
        loaded = cls(model, preprocess, tokenizer, description)
        if device == "cpu":
            loaded._text_threads = choose_text_threads(
                torch, loaded._text_vectors, settings.text_threads
            )
        return loaded

    @property
    def text_threads(self) -> int:
        """The thread count texts alone run on now (texts with company may differ)."""
        return self._text_threads.count()

    @text_threads.setter
    def text_threads(self, count: int) -> None:
        """Run text batches on `count` threads from now on, without re-checking."""
        self._text_threads = TextThreadChoice(count)

    def _normalised(self, features: Any) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def embed_texts(self, texts: list[str], company: bool = False) -> tuple[np.ndarray, list[bool]]:
        counts = [self._token_count(t) for t in texts]
        truncated = [count > self.description.context_length for count in counts]
        short = max(counts, default=0) <= SHORT_TOKENS
        vectors = self._text_threads.run(
            self._torch, len(texts), short, company, lambda: self._text_vectors(texts)
        )
        return vectors, truncated

    def _text_vectors(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors, on the thread count set now."""
        tokens = self._tokenizer(texts).to(self._device)
        with self._torch.inference_mode():
            if self._text_tower is None:
                return self._normalised(self._model.encode_text(tokens))
            return self._normalised(self._text_tower.encode(tokens))

    def _token_count(self, text: str) -> int:
        """Tokens of `text` with its start and end markers, before any truncation."""
        if hasattr(self._tokenizer, "encode"):  # open_clip's SimpleTokenizer
            clean = getattr(self._tokenizer, "clean_fn", None)
            return len(self._tokenizer.encode(clean(text) if clean else text)) + 2
        inner = getattr(self._tokenizer, "tokenizer", None)  # a Hugging Face tokenizer
        if inner is not None:
            return len(inner(text)["input_ids"])
        return 0

    def preprocess(self, image: Image.Image) -> Any:
        return self._preprocess(image)

    def start_helper_thread(self) -> None:
        # A thread's first parallel torch operation gives it an OpenMP team of its own, and more
        # teams than the model thread's slow every text pass (see `EmbedEngine.load`): a decode
        # thread's few tensor operations (the preprocessing's conversion and normalisation) run
        # on one thread, which needs no team. torch settles a thread's count lazily, from the
        # count any thread set last, at its first parallel operation: asking for it settles it
        # now, so the model thread's own changes later cannot reach this one.
        self._torch.get_num_threads()
        self._torch.set_num_threads(1)

    def embed_images(self, inputs: list[Any]) -> np.ndarray:
        batch = self._torch.stack(inputs)
        if self._device.type == "cuda" and batch.device.type == "cpu":
            # Page-locked memory lets the copy run asynchronously with the host's next work.
            batch = batch.pin_memory().to(self._device, non_blocking=True)
        batch = batch.to(self._device, dtype=self._input_dtype)
        with self._torch.inference_mode():
            return self._normalised(self._model.encode_image(batch))

    def decode_on_device(self, data: bytes) -> tuple[Any, int, int] | None:
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as F

        if not data.startswith(b"\xff\xd8"):
            return None
        encoded = self._torch.frombuffer(bytearray(data), dtype=self._torch.uint8)
        try:
            image = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self._device)
        except RuntimeError as exc:
            raise InvalidArgument(f"cannot decode JPEG: {exc}") from None
        height, width = int(image.shape[-2]), int(image.shape[-1])
        size = self.description.image_size
        # The same steps as open_clip's transform (shortest side to `size`, bicubic, centre
        # crop, CLIP's mean and std), on a tensor.
        image = F.resize(image, size, interpolation=F.InterpolationMode.BICUBIC, antialias=True)
        image = F.center_crop(image, [size, size])
        image = F.to_dtype(image, self._torch.float32, scale=True)
        return F.normalize(image, self._mean, self._std), width, height


def short_openmp_spins() -> None:
    """Let torch's idle OpenMP threads spin briefly before they sleep (GOMP_SPINCOUNT=10000),
    unless OMP_WAIT_POLICY or GOMP_SPINCOUNT already say otherwise; only possible before torch
    is first imported.

    A forward pass of a short text is about a hundred small parallel regions, microseconds
    apart. Threads that sleep between them (OMP_WAIT_POLICY=PASSIVE) pay a wake-up at each: a
    ViT-B-32 bf16 text took 22 ms on two threads against 13.9 ms spinning briefly. libgomp's
    own default spins about a hundred times longer, which on cores shared with other work burns
    the core a partner thread needs. When another process takes a core while the embedder runs,
    two spinning threads are slow (44 ms); `text_threads.TextThreadChoice` then moves texts to
    one thread, which does not wait at all (20 ms).
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")


@contextmanager
def _seekable_checkpoint(pretrained: str | None) -> Iterator[str | None]:
    """`pretrained`, or where a checkpoint that is not a regular file (a named pipe,
    `/dev/stdin`, a shell's `<(...)`) was copied to, for as long as the block runs.

    open_clip takes a checkpoint only from a regular file, and torch.load seeks in it; a stream
    is read to the end first, into a temporary file with the same suffix (which picks the
    format: `.safetensors` or torch's own).
    """
    path = Path(pretrained) if pretrained else None
    if path is None or not path.exists() or path.is_file() or path.is_dir():
        yield pretrained
        return
    with tempfile.TemporaryDirectory(prefix="fashionrag-checkpoint-") as folder:
        copy = Path(folder) / f"checkpoint{path.suffix}"
        log.info("reading checkpoint %s (not a regular file) to the end", path)
        with path.open("rb") as source, copy.open("wb") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)
        yield str(copy)


def _resolve_device(device: str, torch: Any) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(f"--device {device} asked for, but no CUDA device is visible")
    return device


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX): there bf16 weights
    run about twice as fast as fp32; without it (AVX2 only) bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and "amx_bf16" in line for line in cpuinfo)
    except OSError:
        return False


def _resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_has_amx() else "fp32"
    if precision == "fp16" and not device.startswith("cuda"):
        raise ConfigurationError("--precision fp16 needs a CUDA device; on a CPU use fp32 or bf16")
    return precision


def _load_failure_message(settings: ModelSettings, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    local_file = Path(settings.pretrained).exists()
    base = f"cannot load model {settings.model!r} with pretrained {settings.pretrained!r}: {exc}"
    if is_random_weights(settings.pretrained) or local_file:
        return base
    return (
        f"{base}\nThe weights come from the Hugging Face hub, which could not be reached"
        f"{' (HF_HUB_OFFLINE=1)' if offline else ''}. Offline, pass a local checkpoint file "
        "(--pretrained /path/to/open_clip_model.safetensors), or --pretrained none for seeded "
        "random weights (tests and benchmarks only), e.g. --model configs/tiny-clip.json "
        "--pretrained none."
    )
