"""Which files /images may serve: regular files inside the configured images directory, and no
others, whatever path a record in ChromaDB names (ChromaDB has no authentication, so anyone who
can write to it can put any path in a record)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from fashionrag.errors import NotFound

log = logging.getLogger(__name__)


class ImageFiles:
    """The image files under one directory (the indexer's --images-dir).

    Args:
        root: the directory; resolved once, so a symlinked mount point is fine.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            log.warning("images directory %s does not exist (yet): /images answers 404", self.root)

    def find(self, record_id: str, path: str) -> Path:
        """The real path of record `record_id`'s file `path` (a relative one is taken inside
        the directory), with every symlink resolved: that path, not the record's, is served.

        Raises:
            NotFound: the file is missing, lies outside the directory (itself or through a
                symlink) or is not a regular file (a device, a FIFO, a directory). The message
                names the record id only; the log says why and which path.
        """
        try:
            real = (self.root / path).resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # missing, unreadable, a symlink loop
            why = getattr(exc, "strerror", None) or exc
            raise self._refuse(record_id, path, f"cannot be resolved ({why})") from None
        if not real.is_relative_to(self.root):
            raise self._refuse(record_id, path, f"resolves outside {self.root} (to {real})")
        try:
            mode = real.stat().st_mode
        except OSError as exc:
            raise self._refuse(record_id, path, f"cannot be read ({exc.strerror or exc})") from None
        if not stat.S_ISREG(mode):
            raise self._refuse(record_id, path, "is not a regular file")
        return real

    def _refuse(self, record_id: str, path: str, why: str) -> NotFound:
        log.warning("not serving image %s: its path %r %s", record_id, path, why)
        # One message and one reason for every cause: a caller cannot probe which paths exist.
        return NotFound(
            f"image {record_id} is indexed but its file cannot be served",
            reason="IMAGE_FILE_NOT_FOUND",
        )
