"""The model behind the embedder: a small interface, and its OpenCLIP implementation.

The server and the engine only know `EmbeddingModel`; another runtime (ONNX, TensorRT) is one more
class here. Only this module imports torch and open_clip.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from embedder_service.settings import ModelSettings
from embedder_service.text_threads import fastest_text_threads, torch_threads
from fashionrag.errors import ConfigurationError, InvalidArgument
from fashionrag.model_info import ModelInfo

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class EmbeddingModel(Protocol):
    """What the engine needs of a model. Vectors are float32 and L2-normalised."""

    description: ModelInfo

    def embed_texts(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """Embed texts; return the (N, D) vectors and, per text, whether it was truncated."""
        ...

    def preprocess(self, image: Image.Image) -> Any:
        """Turn one decoded RGB image into the model's input (runs in the decode workers)."""
        ...

    def embed_images(self, inputs: list[Any]) -> np.ndarray:
        """Embed preprocessed images; return their (N, D) vectors."""
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
        # Threads for text batches (None: torch's own); see embedder_service.text_threads.
        self.text_threads: int | None = None
        self._text_tower = CausalTextTower.of(model)
        if self._text_tower is not None and self._device.type != "cpu":
            self._text_tower = replace(self._text_tower, pass_cost=None)
        if self._text_tower is None:
            log.info("text tower is not causal with end-token pooling: texts run on all positions")

    @classmethod
    def load(cls, settings: ModelSettings) -> OpenClipModel:
        """Load the model that `settings` names.

        Raises:
            ConfigurationError: the model or its weights cannot be found or downloaded; the
                message names the offline ways out.
        """
        _passive_openmp_waits()
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
            loaded.text_threads = settings.text_threads or fastest_text_threads(
                torch, loaded.embed_texts
            )
        return loaded

    def _normalised(self, features: Any) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def embed_texts(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        tokens = self._tokenizer(texts).to(self._device)
        truncated = [self._token_count(t) > self.description.context_length for t in texts]
        with self._torch.inference_mode(), torch_threads(self._torch, self.text_threads):
            if self._text_tower is None:
                return self._normalised(self._model.encode_text(tokens)), truncated
            return self._normalised(self._text_tower.encode(tokens)), truncated

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


@dataclass(frozen=True)
class CausalTextTower:
    """A CLIP text tower that runs on a batch's real length instead of the full context.

    Its attention is causal (a position sees only those before it) and the vector is read at each
    text's end token, so the padding after the longest text's end token cannot change any
    vector: the tower runs on tokens[:, :longest] with the mask and positions cut to match,
    which gives open_clip's own `encode_text` vectors at a fraction of the work ("red tops" is 4
    positions of 77). Texts of different lengths share one pass exactly: a shorter text's
    padding comes after its end token.
    """

    token_embedding: Any
    positional_embedding: Any
    transformer: Any
    ln_final: Any
    text_projection: Any
    attn_mask: Any
    pool_type: str
    eos_id: int | None
    # What one more pass costs, in positions of work: on a CPU a pass reads every weight once
    # whatever its size, which for a short text is most of its time (ViT-B-32, fp32, two cores:
    # 4 positions about 27 ms, each further position about 0.55 ms). None: never split a batch
    # (on a GPU, where positions are nearly free and each pass adds its launches).
    pass_cost: int | None = 48

    @classmethod
    def of(cls, model: Any) -> CausalTextTower | None:
        """The text tower of an open_clip `CLIP` or `CustomTextCLIP` when its own attributes say
        that it is causal with end-token pooling; None for every other model (a bidirectional
        tower such as SigLIP's or MobileCLIP-S's, last-token or CoCa class-token pooling, a
        Hugging Face text encoder, a model that overrides `encode_text`), which then runs
        open_clip's full path."""
        from open_clip.model import CLIP, CustomTextCLIP
        from open_clip.transformer import TextTransformer

        encode_text = getattr(type(model), "encode_text", None)
        if encode_text is CLIP.encode_text:
            tower = cls(
                model.token_embedding,
                model.positional_embedding,
                model.transformer,
                model.ln_final,
                model.text_projection,
                model.attn_mask,
                model.text_pool_type,
                getattr(model, "text_eos_id", None),
            )
        elif encode_text is CustomTextCLIP.encode_text:
            text = model.text
            if (
                type(text).forward is not TextTransformer.forward
                or text.cls_emb is not None
                or text.use_pad_mask
                or text.output_tokens
            ):
                return None
            tower = cls(
                text.token_embedding,
                text.positional_embedding,
                text.transformer,
                text.ln_final,
                text.text_projection,
                text.attn_mask,
                text.pool_type,
                getattr(text, "eos_id", None),
            )
        else:
            return None
        if tower.pool_type not in ("argmax", "eos") or not _is_causal(tower.attn_mask):
            return None
        return tower

    def pool_positions(self, tokens: Any) -> Any:
        """Where each text's vector is read: open_clip's own rule for the pool type."""
        if self.pool_type == "argmax":  # the end token has the highest id in CLIP's vocabulary
            return tokens.argmax(dim=-1)
        return (tokens == self.eos_id).int().argmax(dim=-1)

    def encode(self, tokens: Any) -> Any:
        """open_clip's `encode_text` of each row, in order; rows of very different lengths run as
        separate passes where that saves more positions than a pass costs."""
        import torch

        positions = self.pool_positions(tokens)
        if self.pass_cost is None:
            return self._encode(tokens, positions)
        groups = length_groups([int(p) + 1 for p in positions.tolist()], self.pass_cost)
        if len(groups) == 1:
            return self._encode(tokens, positions)
        order = torch.tensor([i for group in groups for i in group], device=tokens.device)
        vectors = torch.cat([self._encode(tokens[group], positions[group]) for group in groups])
        return torch.empty_like(vectors).index_copy_(0, order, vectors)

    def _encode(self, tokens: Any, positions: Any) -> Any:
        """open_clip's `encode_text`, on the batch's positions up to its last end token."""
        import torch

        length = int(positions.max()) + 1
        dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens[:, :length]).to(dtype)
        x = x + self.positional_embedding[:length].to(dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        # Pooling before the final LayerNorm normalises one row per text instead of all of them:
        # LayerNorm works on each position alone, so the order does not change the vector.
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), positions])
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, torch.nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


def length_groups(lengths: list[int], pass_cost: int) -> list[list[int]]:
    """The indices of `lengths` split into passes, each padded to its longest, that cost the
    fewest positions plus `pass_cost` per pass: texts sorted by length, cut where the padding
    saved outweighs another pass. Texts of similar lengths stay one pass."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0] + [0] * len(order)  # best[end]: the cheapest cost of order[:end]
    cut = [0] * (len(order) + 1)  # where the last pass of that cheapest split starts
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        costs = [best[start] + pass_cost + (end - start) * longest for start in range(end)]
        cut[end] = min(range(end), key=costs.__getitem__)
        best[end] = costs[cut[end]]
    groups = []
    end = len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def _is_causal(mask: Any) -> bool:
    """Whether `mask` is the additive causal mask open_clip builds: -inf above the diagonal,
    zero on and below it."""
    import torch

    if mask is None or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    return bool(torch.equal(mask, torch.full_like(mask, float("-inf")).triu(1)))


def _passive_openmp_waits() -> None:
    """Let torch's OpenMP threads sleep between parallel regions instead of spinning, unless
    OMP_WAIT_POLICY already says otherwise; only possible before torch is first imported.

    A forward pass of a short text is about a hundred small parallel regions. When the cores are
    shared (the service's own decode and gRPC threads, or other processes), a spinning thread
    burns the core its partner needs and every region waits for a descheduled thread: on two
    busy cores one ViT-B-32 text took a median of 160 ms spinning against 35 ms sleeping, with
    the same best case (see the README's text-latency section).
    """
    if "torch" in sys.modules:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
