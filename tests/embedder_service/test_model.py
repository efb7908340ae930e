"""The OpenCLIP model wrapper against open_clip itself, on the tiny config with seeded weights."""

from __future__ import annotations

import io

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from devstack.servers import TINY_MODEL
from embedder_service.model import OpenClipModel
from embedder_service.settings import ModelSettings
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


def test_local_checkpoint_file_is_loaded(model: OpenClipModel, tmp_path: object) -> None:
    from pathlib import Path

    checkpoint = Path(str(tmp_path)) / "tiny.pt"
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
