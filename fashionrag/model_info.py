"""The one description of an embedding model: what the embedder loaded, what its ModelInfo
message carries, what a collection records, and what the query service checks.

A field added here reaches all of them: the embedder fills it, the message conversion below
copies it field by field, and the collection contract reads the identity part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from fashionrag.v1 import embedder_pb2


@dataclass(frozen=True)
class ModelInfo:
    """An embedding model and where it runs.

    The identity (`model_name`, `pretrained`, `dimension`, `seed`) decides whether two vectors
    are comparable; the rest says how the model runs and what one request may carry.
    """

    model_name: str
    pretrained: str
    dimension: int
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    context_length: int = 0
    image_size: int = 0
    max_batch_items: int = 0  # set by the server that serves the model (0: not served)

    IDENTITY: ClassVar[tuple[str, ...]] = ("model_name", "pretrained", "dimension", "seed")

    def identity(self) -> dict[str, Any]:
        """The fields that make vectors comparable, by name."""
        return {name: getattr(self, name) for name in self.IDENTITY}

    def served_with(self, max_batch_items: int) -> ModelInfo:
        """The same model, as a server with this request limit describes it."""
        return replace(self, max_batch_items=max_batch_items)

    def to_message(self) -> embedder_pb2.ModelInfo:
        """The ModelInfo message."""
        return embedder_pb2.ModelInfo(**asdict(self))

    @classmethod
    def from_message(cls, message: embedder_pb2.ModelInfo) -> ModelInfo:
        """Read a ModelInfo message (the message and this class share their field names)."""
        return cls(**{f.name: getattr(message, f.name) for f in fields(cls)})

    def __str__(self) -> str:
        text = f"{self.model_name}/{self.pretrained} ({self.dimension}-d"
        if self.pretrained == "none":
            text += f", seed {self.seed}"
        return text + ")"
