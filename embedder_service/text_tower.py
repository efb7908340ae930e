"""The CLIP text tower run on a batch's real length instead of the full context (see
`CausalTextTower`), and on a CPU on prepacked weights (`CausalTextTower.prepacked`). torch is
imported inside the functions, as in `embedder_service.model`, so that importing this module
does not start torch before the model settles its OpenMP settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# A pass's cost in positions on prepacked weights (ViT-B-32, two cores, one text): fp32 a pass
# about 14.6 ms and each further position 0.36 ms; bf16 12.3 ms and 0.095 ms.
PREPACKED_PASS_COST = {"torch.float32": 40, "torch.bfloat16": 128}


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
    cast_dtype: Any  # the dtype the blocks' weights run in, as open_clip reads it
    # What one more pass costs, in positions of work: on a CPU a pass reads every weight once
    # whatever its size, which for a short text is most of its time (ViT-B-32, fp32, two cores,
    # open_clip's blocks: 4 positions about 27 ms, each further position about 0.55 ms; on
    # prepacked weights see PREPACKED_PASS_COST). None: never split a batch (on a GPU, where
    # positions are nearly free and each pass adds its launches).
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
            parts, pool_type = model, model.text_pool_type
            eos_id = getattr(model, "text_eos_id", None)
        elif encode_text is CustomTextCLIP.encode_text:
            parts = model.text
            if (
                type(parts).forward is not TextTransformer.forward
                or parts.cls_emb is not None
                or parts.use_pad_mask
                or parts.output_tokens
            ):
                return None
            pool_type, eos_id = parts.pool_type, getattr(parts, "eos_id", None)
        else:
            return None
        tower = cls(
            parts.token_embedding,
            parts.positional_embedding,
            parts.transformer,
            parts.ln_final,
            parts.text_projection,
            parts.attn_mask,
            pool_type,
            eos_id,
            parts.transformer.get_cast_dtype(),
        )
        if tower.pool_type not in ("argmax", "eos") or not _is_causal(tower.attn_mask):
            return None
        return tower

    def prepacked(self) -> CausalTextTower:
        """This tower with its blocks and projection on weights prepacked for oneDNN (see
        `embedder_service.prepacked_blocks`), or itself where they cannot be."""
        from embedder_service import prepacked_blocks

        transformer = prepacked_blocks.prepacked_transformer(self.transformer)
        if transformer is None:
            return self
        return replace(
            self,
            transformer=transformer,
            text_projection=prepacked_blocks.packed_projection(self.text_projection),
            pass_cost=PREPACKED_PASS_COST.get(str(self.cast_dtype), self.pass_cost),
        )

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
        x = self.token_embedding(tokens[:, :length]).to(self.cast_dtype)
        x = x + self.positional_embedding[:length].to(self.cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        # Pooling before the final LayerNorm normalises one row per text instead of all of them:
        # LayerNorm works on each position alone, so the order does not change the vector.
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), positions])
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, torch.nn.Module):  # nn.Linear or prepacked
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
