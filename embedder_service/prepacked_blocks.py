"""open_clip's text blocks with their weights prepacked for oneDNN, as a CPU runs them fastest.

A short text is a few positions, so each of a pass's 48 matrix products reads a whole weight for
a handful of rows: the pass is bound by reading weights, not by arithmetic. torch's own `linear`
lays each weight out for the CPU's kernels again on every call; oneDNN's prepacked format does
it once, at load. Measured on this project's 2-core Xeon (ViT-B-32, one text, two threads): bf16
15.6 → 11.1 ms a pass, fp32 21.5 → 19.3 ms; the same vectors (cosine ≥ 0.99999 at fp32).

These are the operators torch's own compiler (inductor, with freezing) emits for a CPU `linear`
of bf16, or of fp32 at varying batch shapes; `torch.compile` would get there too, at 46 to 76 s
of start-up on this machine, which an embedder that scales out cannot pay. Only open_clip's
default block (`ResidualAttentionBlock` with `nn.MultiheadAttention`) is rebuilt, and its own
`forward` still runs: only the attention and the MLP's linear layers are swapped, so layer
scale, norms and residuals stay open_clip's. Any other block, a device other than the CPU, or a
precision oneDNN cannot run keeps open_clip's modules. open_clip's own modules stay too (its
`encode_text` is the reference the tests hold these to): the text tower's weights are held twice
on a CPU, 75 MB more for ViT-B-32 at bf16.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from open_clip.transformer import ResidualAttentionBlock
from torch import nn
from torch.nn import functional as F

# nn.GELU's `approximate` setting -> the algorithm of oneDNN's "gelu" post-op, which runs it
# inside the product ("none" is the exact, erf form in both). Other activations (QuickGELU, for
# OpenAI's weights) run as open_clip's own module after the product.
FUSED_ACTIVATIONS = {"none": "none", "tanh": "tanh"}


class PackedLinear(nn.Module):
    """`nn.Linear` (or x @ W) on a prepacked weight, optionally with GELU fused in."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, gelu: str | None = None):
        super().__init__()
        # Not parameters: the prepacked layout is opaque to everything but oneDNN's linear.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), None)
        self.bias = None if bias is None else bias.detach().clone()
        self._attr, self._algorithm = ("gelu", gelu) if gelu is not None else ("none", "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(
            x, self.packed, self.bias, self._attr, [], self._algorithm
        )


class PackedSelfAttention(nn.Module):
    """`nn.MultiheadAttention` as a block's self-attention calls it (batch first, no weights
    returned), on prepacked projections and torch's fused attention."""

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        self.heads = attention.num_heads
        self.in_proj = PackedLinear(attention.in_proj_weight, attention.in_proj_bias)
        self.out_proj = PackedLinear(attention.out_proj.weight, attention.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        batch, length, width = query.shape
        qkv = self.in_proj(query).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # An additive float mask, as MultiheadAttention takes it: added to the scores.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width)), None


def can_prepack(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether oneDNN can run prepacked linears of `dtype` on `device` in this process."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


def prepacked_transformer(transformer: Any) -> nn.Module | None:
    """A copy of open_clip's text `Transformer` whose blocks run on prepacked weights, or None
    where its blocks or weights are not the kind rebuilt here (see the module's docstring)."""
    blocks = getattr(transformer, "resblocks", None)
    if not blocks or not getattr(transformer, "batch_first", False):
        return None
    if not all(_standard_block(block) and _packable_weights(block) for block in blocks):
        return None
    packed = _shallow_copy(transformer)
    packed.resblocks = nn.ModuleList(_packed_block(block) for block in blocks)
    return packed


def packed_projection(projection: Any) -> nn.Module | None:
    """The text projection (an `nn.Linear`, a matrix the pooled rows are multiplied by, or
    none) as a prepacked product."""
    if projection is None:
        return None
    if isinstance(projection, nn.Linear):
        return PackedLinear(projection.weight, projection.bias)
    return PackedLinear(projection.t(), None)  # x @ P is linear(x, P.T)


def _standard_block(block: Any) -> bool:
    """open_clip's default block with plain self-attention: the shape the packed modules copy."""
    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
        return False
    attention = block.attn
    return (
        type(attention) is nn.MultiheadAttention
        and attention.batch_first
        and attention._qkv_same_embed_dim
        and attention.bias_k is None
        and not attention.add_zero_attn
        and type(block.mlp) is nn.Sequential
        and [name for name, _ in block.mlp.named_children()] == ["c_fc", "gelu", "c_proj"]
        and all(type(block.mlp.get_submodule(name)) is nn.Linear for name in ("c_fc", "c_proj"))
    )


def _packable_weights(block: Any) -> bool:
    """Whether oneDNN can run every weight packed here (open_clip keeps a bf16 model's norms in
    fp32, so the products' own weights are the ones asked about)."""
    weights = (
        block.attn.in_proj_weight,
        block.attn.out_proj.weight,
        block.mlp.c_fc.weight,
        block.mlp.c_proj.weight,
    )
    return all(can_prepack(w.dtype, w.device) for w in weights)


def _shallow_copy(module: Any) -> Any:
    """A copy of `module` sharing its parameters and submodules, whose submodules can be swapped
    without touching the original's (open_clip's own model keeps its modules)."""
    duplicate = copy.copy(module)
    duplicate._modules = dict(module._modules)
    return duplicate


def _packed_block(block: Any) -> nn.Module:
    """The block with its attention and MLP on prepacked weights; its norms, layer scales and
    `forward` are open_clip's own."""
    packed = _shallow_copy(block)
    packed.attn = PackedSelfAttention(block.attn)
    packed.mlp = _packed_mlp(block.mlp)
    return packed


def _packed_mlp(mlp: Any) -> nn.Sequential:
    """The MLP with its two products prepacked, keeping open_clip's names (its code reads
    `mlp.c_fc`); GELU fused into the first product where oneDNN has it."""
    activation = mlp.gelu
    fused = FUSED_ACTIVATIONS.get(activation.approximate) if type(activation) is nn.GELU else None
    return nn.Sequential(
        OrderedDict(
            c_fc=PackedLinear(mlp.c_fc.weight, mlp.c_fc.bias, gelu=fused),
            gelu=nn.Identity() if fused is not None else activation,
            c_proj=PackedLinear(mlp.c_proj.weight, mlp.c_proj.bias),
        )
    )
