"""Writes to the export area (a local folder or an object store) that a reader never sees half done.

- Local folders: write a hidden temporary file in the target folder, fsync, then rename over
  the target. rename(2) within one filesystem is atomic: a reader opens the old file or the new.
- Object stores: write a local temporary file completely, then upload it in one `put`. An
  object becomes visible only when its upload completes, so readers never see a partial object
  either; streaming straight into the store is avoided because an error would still commit what
  was written so far when the stream closes.
Either way a failure before the commit leaves the previous file untouched and no temporary file.
"""

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem


class ExportArea:
    """An fsspec URL and the paths below it."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def uri(self, relative: str) -> str:
        """The address to show a person (metadata, logs)."""
        return self.fs.unstrip_protocol(self.path(relative))

    @contextmanager
    def atomic_write(self, relative: str) -> Iterator[BinaryIO]:
        target = self.path(relative)
        if self.is_local:
            folder, name = os.path.split(target)
            os.makedirs(folder, exist_ok=True)
            temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        else:
            handle, temporary = tempfile.mkstemp(suffix=".tmp")
            os.close(handle)
        try:
            with open(temporary, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            if self.is_local:
                os.replace(temporary, target)
            else:
                self.fs.put_file(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)

    def list(self, relative: str) -> list[str]:
        """Paths of the files below a folder, relative to the area ([] when it does not exist)."""
        base = self.path(relative)
        if not self.fs.exists(base):
            return []
        prefix = f"{self.root}/"
        return sorted(p.removeprefix(prefix) for p in self.fs.find(base) if not _hidden(p))

    def remove(self, relative: str) -> None:
        self.fs.rm(self.path(relative))

    def open(self, relative: str) -> BinaryIO:
        return self.fs.open(self.path(relative), "rb")


def _hidden(path: str) -> bool:
    return os.path.basename(path).startswith(".")
