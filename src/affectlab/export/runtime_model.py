"""Which runtime answers for a model, and the ONNX file that a run folder or checkpoint runs from.

On a CPU, ONNX Runtime runs the same model about twice as fast as PyTorch eager (issue 26: 12.0 s against 25.2 s
for 150 photos of 5 faces), so ``predict``, ``serve``, the page, Ray and ``affectlab.load`` run a run folder or
``.pt`` checkpoint from its ONNX export unless ``backend="torch"`` is asked for. The export carries the run's flip
TTA and temperature (see ``affectlab.export.onnx``), so both runtimes give the same records.

The export used must be the export of THIS checkpoint: it records the checkpoint's SHA-256
(``checkpoint_sha256`` in its metadata). A ``model.onnx`` written before that was recorded is trusted when it is
an fp32 export no older than the checkpoint. Otherwise the checkpoint is exported once, atomically: into the
run folder when it has no ``model.onnx`` yet and can be written, else into the cache (``$AFFECTLAB_CACHE/onnx/
<sha256>/model.onnx``), so a user's file is never replaced.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectlab.config import cache_root
from affectlab.errors import AffectlabError
from affectlab.export.onnx import checkpoint_sha256, export_onnx, onnx_matches
from affectlab.models.registry import resolve_model
from affectlab.runtime.settings import BACKENDS

if TYPE_CHECKING:
    from affectlab.runtime.predictor import AffectPredictor

__all__ = ["choose_backend", "load", "model_for_backend"]

log = logging.getLogger(__name__)

#: The name of the export in a run folder, and in its cache folder.
ONNX_NAME = "model.onnx"


def choose_backend(requested: str = "auto") -> str:
    """``torch`` or ``onnx`` for ``requested`` (``auto``, ``torch``, ``onnx``).

    ``auto`` is ONNX Runtime, except where a CUDA GPU is usable by PyTorch and ONNX Runtime has no CUDA provider:
    there PyTorch is the faster runtime.
    """
    if requested not in BACKENDS:
        raise AffectlabError(f"--backend {requested}: use one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return "onnx"
    return "torch" if _cuda_gpu() else "onnx"


def _cuda_gpu() -> bool:
    """A CUDA GPU that PyTorch can use; on Linux without the NVIDIA driver, answered without importing torch."""
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


def model_for_backend(path: str | Path | None, backend: str = "auto") -> Path:
    """The file to load for ``backend``: ``path`` itself for PyTorch or an ``.onnx`` file, else the checkpoint's
    ONNX export (made on first use). A named model (None: the default one) is its checked file first. Refuses
    ``torch`` for an ``.onnx`` file, which has no PyTorch weights."""
    path = resolve_model(path)
    chosen = choose_backend(backend)
    if path.suffix.lower() == ".onnx":
        if backend == "torch":
            raise AffectlabError(f"{path}: --backend torch needs a run folder or .pt checkpoint, not an ONNX file")
        return path
    if chosen == "torch":
        return path
    checkpoint = path / "model.pt" if path.is_dir() else path
    if not checkpoint.is_file():
        return path  # loading it says what is wrong (missing model, a study folder) in the usual words
    return _export_for(checkpoint)


def _export_for(checkpoint: Path) -> Path:
    digest = checkpoint_sha256(checkpoint)
    beside = checkpoint.parent / ONNX_NAME
    cached = cache_root() / "onnx" / digest / ONNX_NAME
    for candidate in (beside, cached):
        if onnx_matches(candidate, checkpoint, digest):
            return candidate
    # Only a run's own checkpoint (model.pt) gets its export beside it: another .pt (a named model inside the
    # package, or one of several files in a folder) would make model.onnx a name for the wrong model.
    writable = checkpoint.name == "model.pt" and not beside.exists() and os.access(checkpoint.parent, os.W_OK | os.X_OK)
    target = beside if writable else cached
    log.info("%s: exporting to ONNX once, for ONNX Runtime: %s", checkpoint, target)
    try:
        return export_onnx(checkpoint, target, checkpoint_hash=digest)
    except OSError as exc:  # the run folder became unwritable after the check: use the cache
        if target == cached:
            raise AffectlabError(f"{target}: cannot write the ONNX export ({exc.strerror or exc})") from None
        return export_onnx(checkpoint, cached, checkpoint_hash=digest)


def load(path: str | Path | None, backend: str = "auto", **options: Any) -> AffectPredictor:
    """``affectlab.load``: ``runtime.predictor.load`` on the file ``backend`` runs (see ``model_for_backend``)."""
    from affectlab.runtime.predictor import load as load_file

    given = resolve_model(path)
    return load_file(model_for_backend(given, backend), source=given, **options)
