"""ImageFiles in-process: which record paths /images may serve (the same over a real service:
test_http_safety.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fashionrag.errors import NotFound
from query_service.image_files import ImageFiles


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "train").mkdir(parents=True)
    (root / "train" / "1.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret").write_text("root:x:0:0")
    return root


def test_a_regular_file_inside_is_served_by_its_real_path(images: Path) -> None:
    files = ImageFiles(images)
    assert files.find("train-1", str(images / "train" / "1.jpg")) == images / "train" / "1.jpg"
    assert files.find("train-1", "train/1.jpg") == images / "train" / "1.jpg"  # relative: inside
    (images / "alias.jpg").symlink_to(images / "train" / "1.jpg")
    assert files.find("train-1", str(images / "alias.jpg")) == images / "train" / "1.jpg"


def test_a_symlinked_images_dir_is_fine(images: Path, tmp_path: Path) -> None:
    (tmp_path / "mounted").symlink_to(images)
    files = ImageFiles(tmp_path / "mounted")
    assert files.find("train-1", str(tmp_path / "mounted" / "train" / "1.jpg")).read_bytes()


def _loop(images: Path) -> str:
    (images / "a.jpg").symlink_to(images / "b.jpg")
    (images / "b.jpg").symlink_to(images / "a.jpg")
    return str(images / "a.jpg")


def _fifo(images: Path) -> str:
    os.mkfifo(images / "pipe.jpg")
    return str(images / "pipe.jpg")


def _escape(images: Path) -> str:
    (images / "escape.jpg").symlink_to(images.parent / "secret")
    return str(images / "escape.jpg")


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(lambda images: str(images.parent / "secret"), id="outside"),
        pytest.param(lambda images: "../secret", id="relative-outside"),
        pytest.param(lambda images: str(images / "train/../../secret"), id="dot-dot"),
        pytest.param(_escape, id="symlink-out"),
        pytest.param(_loop, id="symlink-loop"),
        pytest.param(_fifo, id="fifo"),
        pytest.param(lambda images: str(images / "train"), id="directory"),
        pytest.param(lambda images: "", id="empty"),
        pytest.param(lambda images: str(images / "train" / "2.jpg"), id="missing"),
    ],
)
def test_anything_else_is_refused_alike_naming_the_record_only(
    images: Path, make_path: Callable[[Path], str], caplog: pytest.LogCaptureFixture
) -> None:
    path = make_path(images)
    with pytest.raises(NotFound) as refused:
        ImageFiles(images).find("train-7", path)
    assert refused.value.reason == "IMAGE_FILE_NOT_FOUND"
    assert str(refused.value) == "image train-7 is indexed but its file cannot be served"
    assert "not serving image train-7" in caplog.text
