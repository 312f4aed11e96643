"""Atomic file writes and run-folder guards.

A killed process must never leave a half-written ``metrics.json`` or checkpoint that a later step would read
as valid, so every result file is written to a temporary sibling and renamed into place (rename is atomic on
POSIX within one filesystem).

Run folders carry a marker file (``.affectlab-run.json``). ``--overwrite`` replaces only a folder that has one,
never the current folder, one of its parents, the home folder or ``/``; and the new run is built in a sibling
temporary folder that replaces the old run only once it has finished, so a failed ``--overwrite`` run leaves the
old one exactly as it was (git's rule: never delete what you did not create).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from affectlab.errors import AffectlabError

__all__ = [
    "RUN_MARKER",
    "atomic_write",
    "check_replaceable",
    "is_run_folder",
    "prepare_run_dir",
    "run_folder",
    "write_bytes",
    "write_json",
    "write_run_marker",
    "write_text",
]

log = logging.getLogger(__name__)

#: The file that makes a folder an affectlab run, which ``--overwrite`` may replace.
RUN_MARKER = ".affectlab-run.json"
RUN_MARKER_FORMAT = "affectlab-run-v1"


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
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


def write_run_marker(folder: str | os.PathLike[str], kind: str, command: str | None = None) -> Path:
    """Mark ``folder`` as created by affectlab (version, command, time), so that ``--overwrite`` may replace it.

    ``command`` is the command line that made it (default: this process's)."""
    from affectlab.version import __version__

    return write_json(
        Path(folder) / RUN_MARKER,
        {
            "format": RUN_MARKER_FORMAT,
            "kind": kind,
            "affectlab_version": __version__,
            "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` holds a readable affectlab run marker."""
    marker = Path(path) / RUN_MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("format") == RUN_MARKER_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Raise unless ``path`` is an affectlab run folder that may be deleted: never ``/``, the home folder, the
    current folder or a folder that contains one of them, a symbolic link, or a folder without the run marker."""
    path = Path(path)
    real = path.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if real == Path(real.anchor):
        why = "is the root folder"
    elif real == cwd or real in cwd.parents:
        why = "is the current folder or contains it"
    elif real == home or real in home.parents:
        why = "is the home folder or contains it"
    elif path.is_symlink():
        why = "is a symbolic link"
    elif not is_run_folder(path):
        why = f"is not an affectlab run (no {RUN_MARKER}); remove it yourself or choose another --out"
    else:
        return
    raise AffectlabError(f"{path}: refusing to replace it with --overwrite: it {why}")


def prepare_run_dir(
    path: str | os.PathLike[str], overwrite: bool, kind: str = "run", command: str | None = None
) -> Path:
    """Create a fresh, marked run folder, refusing to touch a user's earlier results unless ``overwrite`` is set;
    ``overwrite`` deletes only an affectlab run (see ``check_replaceable``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AffectlabError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise AffectlabError(f"{path}: folder exists and is not empty; pass --overwrite to replace it")
        check_replaceable(path)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_run_marker(path, kind, command)
    return path


@contextmanager
def run_folder(
    path: str | os.PathLike[str],
    overwrite: bool,
    keep_if: str | tuple[str, ...],
    kind: str = "run",
    resume: bool = False,
    command: str | None = None,
) -> Iterator[Path]:
    """A marked run folder for a block that fills it; yields the folder to write into.

    A new (or empty) ``path`` is filled in place; if the block fails before any of ``keep_if`` (a finished result,
    or a checkpoint to resume from) exists, what it wrote is removed, so that fixing a typo never needs
    ``--overwrite``. With ``overwrite``, an existing run is kept untouched while the block fills a sibling
    temporary folder, which replaces it only when the block succeeds. With ``resume``, the existing run is
    continued in place and nothing is removed on failure.
    """
    path = Path(path)
    keep = (keep_if,) if isinstance(keep_if, str) else keep_if
    if path.exists() and not path.is_dir():
        raise AffectlabError(f"{path}: exists and is not a folder")
    if resume:
        if not is_run_folder(path):
            raise AffectlabError(f"{path}: nothing to resume: not an affectlab run (no {RUN_MARKER})")
        yield path
        return
    existed = path.is_dir()
    if existed and any(path.iterdir()):
        if not overwrite:
            hint = " (or --resume to continue it)" if (path / "checkpoints" / "last.ckpt").is_file() else ""
            raise AffectlabError(f"{path}: folder exists and is not empty; pass --overwrite to replace it{hint}")
        check_replaceable(path)
        try:
            build = Path(tempfile.mkdtemp(prefix=f".{path.name}.affectlab-new-", dir=path.parent))
        except OSError as exc:
            raise AffectlabError(
                f"{path.parent}: cannot build the new run next to the old one ({exc.strerror})"
            ) from None
    else:
        path.mkdir(parents=True, exist_ok=True)
        build = path
    try:
        write_run_marker(build, kind, command)
        yield build
    except BaseException:
        kept = any((build / name).exists() for name in keep)
        if build != path:  # --overwrite: the old run was never touched
            if kept:
                log.warning("%s is unchanged; the failed run's partial results are in %s", path, build)
            else:
                shutil.rmtree(build, ignore_errors=True)
        elif not kept:
            if existed:
                _empty(build)  # the user's empty folder stays, without what this run put in it
            else:
                shutil.rmtree(build, ignore_errors=True)
        raise
    if build != path:
        _swap(build, path)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _swap(new: Path, old: Path) -> None:
    """Put the finished ``new`` folder in place of the run ``old``; the old run is deleted only after that."""
    aside = old.with_name(f".{old.name}.affectlab-old-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(old, aside)
    try:
        os.rename(new, old)
    except BaseException:
        os.rename(aside, old)
        raise
    shutil.rmtree(aside, ignore_errors=True)
