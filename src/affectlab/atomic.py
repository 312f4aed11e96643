"""Atomic file writes and run-folder guards.

A killed process must never leave a half-written ``metrics.json`` or checkpoint that a later step would read
as valid, so every result file is written to a temporary sibling and renamed into place (rename is atomic on
POSIX within one filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from affectlab.errors import AffectlabError

__all__ = ["atomic_write", "write_json", "write_text", "write_bytes", "prepare_run_dir", "run_folder"]


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the finished file to ``path``; nothing appears at ``path`` on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; results should get the permissions any file written by the user gets.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        writer(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metric dicts; JSON has no NaN, so callers map NaN to None first.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def prepare_run_dir(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Create a fresh run folder, refusing to touch a user's earlier results unless ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AffectlabError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise AffectlabError(f"{path}: folder exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def run_folder(path: str | os.PathLike[str], overwrite: bool, keep_if: str) -> Iterator[Path]:
    """``prepare_run_dir`` for a block that fills the folder; if the block fails before ``keep_if`` (the first
    finished result) exists, the folder is removed, so that fixing a typo never needs ``--overwrite``."""
    folder = prepare_run_dir(path, overwrite)
    try:
        yield folder
    except BaseException:
        if not (folder / keep_if).exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise
