"""Bytes under a store's root, a folder or a pyarrow URI: the file operations the dense store and
the score cache (dense_store.py, score_cache.py) build their entries and claims from.

In a folder, files are renamed into place and an exclusive create is O_CREAT|O_EXCL; on a URI
(``s3://bucket/path``) a file is written whole on close and a create is check-then-write.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from hgsearch.fileio import write_bytes_atomic


class StoreFiles:
    """Read, write, create-exclusively and delete files by path relative to ``root``."""

    def __init__(self, root: str) -> None:
        self.fs, self.root = None, root
        if "://" in root:
            import pyarrow.fs

            fs, self.root = pyarrow.fs.FileSystem.from_uri(root)
            self.fs = None if isinstance(fs, pyarrow.fs.LocalFileSystem) else fs
        self.root = self.root.rstrip("/") if self.fs else str(Path(self.root).expanduser())

    def read(self, rel: str) -> bytes | None:
        try:
            if self.fs is None:
                return Path(self.root, rel).read_bytes()
            with self.fs.open_input_stream(f"{self.root}/{rel}") as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def write(self, rel: str, data: bytes) -> None:
        if self.fs is None:
            return write_bytes_atomic(Path(self.root, rel), data)
        self.fs.create_dir(f"{self.root}/{rel}".rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(f"{self.root}/{rel}") as f:
            f.write(data)

    def create(self, rel: str, data: bytes) -> bool:
        """Write ``rel`` unless it exists; False when it did."""
        if self.fs is not None:
            if self.read(rel) is not None:
                return False
            self.write(rel, data)
            return True
        path = Path(self.root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def remove_if(self, rel: str, expected: bytes) -> None:
        """Remove ``rel`` if it still holds ``expected`` (a stale claim)."""
        if self.fs is not None:
            if self.read(rel) == expected:
                self.delete(rel)
            return
        path = Path(self.root, rel)     # in a folder: atomically, by renaming it aside first
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.stale")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        if aside.read_bytes() != expected:   # a fresh claim written since: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        aside.unlink()

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            if self.fs is None:
                Path(self.root, rel).unlink()
            else:
                self.fs.delete_file(f"{self.root}/{rel}")
