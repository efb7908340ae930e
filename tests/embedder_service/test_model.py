"""The OpenCLIP model wrapper against open_clip itself, on the tiny config with seeded weights."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from devstack.servers import TINY_MODEL
from embedder_service import prepacked_blocks
from embedder_service.model import OpenClipModel
from embedder_service.prepacked_blocks import PackedLinear, PackedSelfAttention, can_prepack
from embedder_service.settings import ModelSettings
from embedder_service.text_tower import CausalTextTower, length_groups
from fashionrag.errors import ConfigurationError


def settings(**kw: object) -> ModelSettings:
    base: dict[str, object] = {
        "model": str(TINY_MODEL),
        "pretrained": "none",
        "seed": 0,
        "device": "cpu",
        "precision": "fp32",
    }
    base.update(kw)
    return ModelSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> OpenClipModel:
    return OpenClipModel.load(settings())


def reference(seed: int) -> tuple[torch.nn.Module, object, object]:
    open_clip.add_model_config(TINY_MODEL)
    torch.manual_seed(seed)
    clip, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL.stem)
    clip.eval()
    return clip, preprocess, open_clip.get_tokenizer(TINY_MODEL.stem)


def test_description_names_the_model(model: OpenClipModel) -> None:
    d = model.description
    assert (d.model_name, d.pretrained, d.dimension, d.device, d.precision) == (
        "tiny-clip",
        "none",
        32,
        "cpu",
        "fp32",
    )
    assert d.context_length == 16 and d.image_size == 32


def test_text_vectors_equal_open_clips_own(model: OpenClipModel) -> None:
    clip, _, tokenizer = reference(seed=0)
    texts = ["red tops", "a long dress"]
    with torch.inference_mode():
        expected = clip.encode_text(tokenizer(texts))  # type: ignore[operator]
        expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    vectors, _ = model.embed_texts(texts)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_image_vectors_equal_open_clips_own(model: OpenClipModel) -> None:
    clip, preprocess, _ = reference(seed=0)
    image = Image.new("RGB", (50, 40), (200, 30, 30))
    with torch.inference_mode():
        expected = clip.encode_image(preprocess(image).unsqueeze(0))  # type: ignore[operator]
        expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(model.embed_images([model.preprocess(image)]), expected, atol=1e-5)


def test_vectors_are_unit_length_float32(model: OpenClipModel) -> None:
    vectors, _ = model.embed_texts(["one", "two", "three"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_same_seed_same_weights_other_seed_other_weights(model: OpenClipModel) -> None:
    again = OpenClipModel.load(settings())
    other = OpenClipModel.load(settings(seed=1))
    a = model.embed_texts(["red tops"])[0]
    np.testing.assert_array_equal(a, again.embed_texts(["red tops"])[0])
    assert not np.allclose(a, other.embed_texts(["red tops"])[0])


def test_long_text_is_flagged_truncated(model: OpenClipModel) -> None:
    _, truncated = model.embed_texts(["red tops", "a very long description " * 10])
    assert truncated == [False, True]


def test_missing_model_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        OpenClipModel.load(settings(model="/nonexistent/model.json"))


def test_local_checkpoint_file_is_loaded(model: OpenClipModel, tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    other = OpenClipModel.load(settings(seed=7))
    torch.save(other._model.state_dict(), checkpoint)
    loaded = OpenClipModel.load(settings(pretrained=str(checkpoint)))
    assert loaded.description.pretrained == "tiny.pt"
    np.testing.assert_allclose(
        loaded.embed_texts(["red tops"])[0], other.embed_texts(["red tops"])[0], atol=1e-6
    )


def test_preprocess_accepts_decoded_bytes(model: OpenClipModel) -> None:
    out = io.BytesIO()
    Image.new("RGB", (90, 60), "green").save(out, "JPEG")
    tensor = model.preprocess(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    assert tuple(tensor.shape) == (3, 32, 32)


# The text tower on the batch's real length against open_clip's encode_text on all positions.


def full_context_vectors(model: OpenClipModel, texts: list[str]) -> np.ndarray:
    with torch.inference_mode():
        tokens = model._tokenizer(texts)
        vectors = model._model.encode_text(tokens).float()
        return torch.nn.functional.normalize(vectors, dim=-1).numpy()


def assert_same_directions(actual: np.ndarray, expected: np.ndarray) -> None:
    cosines = np.sum(actual * expected, axis=1)
    assert cosines.min() >= 0.99999, cosines


def texts_up_to(context_length: int, lengths: list[int]) -> list[str]:
    """Texts of `n` tokens with their start and end markers, for each n in `lengths`; past the
    context they are truncated. "red" is one token in CLIP's vocabulary."""
    return [" ".join(["red"] * (n - 2)) for n in lengths]


def config_variant(
    tmp_path: Path,
    name: str,
    text_cfg: dict[str, object],
    custom_text: bool = False,
    top_level: dict[str, object] | None = None,
) -> ModelSettings:
    """The tiny config with `text_cfg` (and `top_level`) changed, saved as `name`.json."""
    config = json.loads(TINY_MODEL.read_text())
    config["text_cfg"].update(text_cfg)
    config.update(top_level or {})
    if custom_text:
        config["custom_text"] = True
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return settings(model=str(path))


@pytest.fixture(scope="module")
def vit_b_32() -> OpenClipModel:
    return OpenClipModel.load(settings(model="ViT-B-32"))


def test_tiny_text_tower_runs_on_the_real_length(model: OpenClipModel) -> None:
    assert CausalTextTower.of(model._model) is not None


def test_every_length_one_at_a_time_gives_open_clips_vectors(model: OpenClipModel) -> None:
    context = model.description.context_length
    texts = texts_up_to(context, list(range(2, context + 4)))  # the last three are truncated
    vectors = np.concatenate([model.embed_texts([t])[0] for t in texts])
    assert_same_directions(vectors, full_context_vectors(model, texts))


def test_mixed_length_batches_give_open_clips_vectors(model: OpenClipModel) -> None:
    context = model.description.context_length
    texts = texts_up_to(context, [2, context + 5, 3, context, 7, 2, context - 1, 11])
    for batch in (texts, texts[::-1], texts[:3], texts[2:6]):
        vectors, _ = model.embed_texts(batch)
        assert_same_directions(vectors, full_context_vectors(model, batch))
    assert model.embed_texts(texts)[1] == [False, True, False, False, False, False, False, False]


@pytest.mark.parametrize("prepacked", [False, True])
@pytest.mark.parametrize("pass_cost", [None, 1, 6, 48])
def test_end_token_at_every_position_gives_open_clips_vectors(
    model: OpenClipModel, pass_cost: int | None, prepacked: bool
) -> None:
    """Raw token rows whose end token sits at positions 0..context-1 (lengths 1..context), in one
    batch, shuffled: the shorter rows' padding after their end token changes nothing, and rows
    split into passes by length come back in order; on open_clip's blocks and prepacked ones."""
    tower = CausalTextTower.of(model._model)
    assert tower is not None
    if prepacked:
        tower = tower.prepacked()
        assert isinstance(tower.transformer.resblocks[0].attn, PackedSelfAttention)
    tower = replace(tower, pass_cost=pass_cost)
    context = model.description.context_length
    end = int(model._tokenizer(["a"])[0].max())
    generator = torch.Generator().manual_seed(0)
    tokens = torch.zeros(context, context, dtype=torch.long)
    for row in range(context):
        tokens[row, :row] = torch.randint(1, end - 1, (row,), generator=generator)
        tokens[row, row] = end
    tokens = tokens[torch.randperm(context, generator=generator)]
    with torch.inference_mode():
        short = torch.nn.functional.normalize(tower.encode(tokens), dim=-1).numpy()
        full = torch.nn.functional.normalize(model._model.encode_text(tokens), dim=-1).numpy()
    assert_same_directions(short, full)


def test_texts_of_similar_length_run_as_one_pass() -> None:
    assert length_groups([4, 6, 5, 4, 7], pass_cost=48) == [[0, 3, 2, 1, 4]]
    assert length_groups([9], pass_cost=48) == [[0]]


def test_one_long_text_runs_apart_from_many_short_ones() -> None:
    assert length_groups([5, 77, 4, 6, 5, 5], pass_cost=48) == [[2, 0, 4, 5, 3], [1]]
    assert length_groups([5, 77, 4], pass_cost=48) == [[2, 0], [1]]
    # 30 positions of padding saved would not pay for a pass of 48.
    assert length_groups([5, 20, 4], pass_cost=48) == [[2, 0, 1]]


def test_vit_b_32_gives_open_clips_vectors_on_the_real_length(vit_b_32: OpenClipModel) -> None:
    assert CausalTextTower.of(vit_b_32._model) is not None
    texts = texts_up_to(77, [2, 4, 9, 33, 76, 77, 90])  # 90: truncated to 77
    expected = full_context_vectors(vit_b_32, texts)
    assert_same_directions(vit_b_32.embed_texts(texts[1:2])[0], expected[1:2])
    assert_same_directions(vit_b_32.embed_texts(texts[:3])[0], expected[:3])
    vectors, truncated = vit_b_32.embed_texts(texts[::-1])
    assert_same_directions(vectors, expected[::-1])
    assert truncated == [True] + [False] * 6


def test_vit_b_32_runs_its_text_blocks_on_prepacked_weights(vit_b_32: OpenClipModel) -> None:
    tower = vit_b_32._text_tower
    assert tower is not None
    for block in tower.transformer.resblocks:
        assert isinstance(block.attn, PackedSelfAttention)
        assert isinstance(block.mlp.c_fc, PackedLinear)
        assert isinstance(block.mlp.c_proj, PackedLinear)
        assert isinstance(block.mlp.gelu, torch.nn.Identity)  # fused into c_fc
    assert isinstance(tower.text_projection, PackedLinear)
    # open_clip's own model keeps its modules: encode_text and the image tower are untouched.
    assert isinstance(vit_b_32._model.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)


@pytest.mark.parametrize(
    ("name", "top_level", "text_cfg", "packed"),
    [
        # OpenAI's weights: QuickGELU, which oneDNN cannot fuse, runs as open_clip's module.
        ("tiny-quick-gelu", {"quick_gelu": True}, {}, True),
        ("tiny-tanh-gelu", {}, {"act_kwargs": {"approximate": "tanh"}}, True),
        ("tiny-layer-scale", {}, {"ls_init_value": 0.5}, True),
        ("tiny-projection-bias", {}, {"proj_bias": True}, True),
        # A block open_clip builds otherwise (norms inside the attention) keeps its own modules.
        ("tiny-qk-norm", {}, {"qk_norm": True}, False),
    ],
)
def test_text_blocks_are_prepacked_where_their_shape_allows(
    tmp_path: Path,
    name: str,
    top_level: dict[str, object],
    text_cfg: dict[str, object],
    packed: bool,
) -> None:
    variant = config_variant(tmp_path, name, text_cfg, top_level=top_level)
    loaded = OpenClipModel.load(variant)
    tower = loaded._text_tower
    assert tower is not None
    first = tower.transformer.resblocks[0]
    assert isinstance(first.attn, PackedSelfAttention) is packed
    if packed:
        fused = type(loaded._model.transformer.resblocks[0].mlp.gelu) is torch.nn.GELU
        assert isinstance(first.mlp.gelu, torch.nn.Identity) is fused
    texts = texts_up_to(16, [2, 3, 9, 16, 20])
    assert_same_directions(loaded.embed_texts(texts)[0], full_context_vectors(loaded, texts))
    for batch in (texts[:1], texts[2:4]):
        assert_same_directions(loaded.embed_texts(batch)[0], full_context_vectors(loaded, batch))


def test_prepacking_is_for_the_cpu_in_fp32_or_bf16_where_onednn_has_it() -> None:
    cpu = torch.device("cpu")
    assert can_prepack(torch.float32, cpu)
    assert can_prepack(torch.bfloat16, cpu) is torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert not can_prepack(torch.float16, cpu)
    assert not can_prepack(torch.float32, torch.device("meta"))


def test_a_precision_onednn_cannot_run_keeps_open_clips_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As on a CPU without oneDNN's bf16 (AVX2 only): a bf16 model keeps open_clip's blocks,
    though its norms are fp32 (open_clip keeps them so) and fp32 could be packed."""
    monkeypatch.setattr(
        prepacked_blocks, "can_prepack", lambda dtype, device: dtype == torch.float32
    )
    bf16 = OpenClipModel.load(settings(precision="bf16", text_threads=1))
    tower = bf16._text_tower
    assert tower is not None
    assert isinstance(tower.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)
    assert not isinstance(tower.text_projection, PackedLinear)
    texts = texts_up_to(16, [2, 5, 16])
    reference = full_context_vectors(bf16, texts)
    assert (bf16.embed_texts(texts)[0] * reference).sum(axis=1).min() >= 0.999


def test_bf16_text_vectors_follow_fp32_ones() -> None:
    """bf16 keeps about three significant digits, so it is held to fp32's directions loosely;
    prepacked where oneDNN runs bf16 on this CPU, open_clip's blocks elsewhere."""
    bf16 = OpenClipModel.load(settings(precision="bf16"))
    fp32 = OpenClipModel.load(settings())
    tower = bf16._text_tower
    assert tower is not None
    packed = isinstance(tower.transformer.resblocks[0].attn, PackedSelfAttention)
    assert packed is can_prepack(torch.bfloat16, torch.device("cpu"))
    texts = [*texts_up_to(16, [2, 4, 9, 16]), "red tops", "a long black evening dress"]
    cosines = np.sum(bf16.embed_texts(texts)[0] * fp32.embed_texts(texts)[0], axis=1)
    assert cosines.min() >= 0.99, cosines


def test_custom_text_tower_runs_on_the_real_length(tmp_path: Path) -> None:
    custom = OpenClipModel.load(config_variant(tmp_path, "tiny-custom-text", {}, custom_text=True))
    assert type(custom._model).__name__ == "CustomTextCLIP"
    assert CausalTextTower.of(custom._model) is not None
    texts = texts_up_to(16, [2, 5, 16, 20])
    assert_same_directions(custom.embed_texts(texts)[0], full_context_vectors(custom, texts))


@pytest.mark.parametrize(
    ("name", "text_cfg", "custom_text"),
    [
        ("tiny-bidirectional", {"no_causal_mask": True}, False),
        ("tiny-last-token", {"pool_type": "last"}, False),
        ("tiny-first-token", {"pool_type": "first"}, False),
        ("tiny-custom-bidirectional", {"no_causal_mask": True}, True),
        ("tiny-class-token", {"embed_cls": True}, True),
    ],
)
def test_other_text_towers_take_the_full_path(
    tmp_path: Path, name: str, text_cfg: dict[str, object], custom_text: bool
) -> None:
    other = OpenClipModel.load(config_variant(tmp_path, name, text_cfg, custom_text))
    assert CausalTextTower.of(other._model) is None
    texts = texts_up_to(16, [3, 9, 20])
    np.testing.assert_array_equal(other.embed_texts(texts)[0], full_context_vectors(other, texts))


def test_text_threads_are_measured_at_load_or_taken_as_given() -> None:
    import torch

    measured = OpenClipModel.load(settings())
    assert measured.text_threads in {1, torch.get_num_threads()}
    given = OpenClipModel.load(settings(text_threads=1))
    assert given.text_threads == 1


def test_text_vectors_are_the_same_on_any_thread_count(model: OpenClipModel) -> None:
    import torch

    texts = ["red tops", "a long black evening dress with a slit", "x"]
    before = torch.get_num_threads()
    vectors = {}
    for count in (1, 2):
        model.text_threads = count
        vectors[count], _ = model.embed_texts(texts)
        assert torch.get_num_threads() == before  # images keep every thread
    cosine = (vectors[1] * vectors[2]).sum(axis=1)
    assert cosine.min() >= 0.99999, cosine


def test_a_helper_thread_stays_on_one_thread_whatever_the_model_thread_sets(
    model: OpenClipModel,
) -> None:
    """torch settles a thread's count lazily, at its first parallel operation, from the count
    any thread set last: a decode thread set up before the model thread sets its own count back
    (as a text batch on one thread does) must still run on one thread."""
    ready, go = threading.Event(), threading.Event()
    seen: list[int] = []

    def helper() -> None:
        model.start_helper_thread()
        ready.set()
        go.wait(10)
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=helper)
    thread.start()
    ready.wait(10)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_num_threads(2)
    go.set()
    thread.join(10)
    torch.set_num_threads(before)
    assert seen == [1]
