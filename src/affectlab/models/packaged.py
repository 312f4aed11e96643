"""Files that ship inside affectlab (a ported network's weights and data), read only if they are the files built.

FaceMesh and dlib's face ResNet were converted once by a tool in ``tools/``, which printed each file's SHA-256 into
the module that loads it; a damaged or replaced file would give wrong landmarks or features without any error, so
every read checks the hash first and refuses the file in one line that says what to do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from affectlab.errors import AffectlabError

if TYPE_CHECKING:
    import torch

__all__ = ["packaged_bytes", "packaged_state_dict"]


def packaged_bytes(path: Path, sha256: str, what: str) -> bytes:
    """The bytes of the packaged file ``path`` (``what`` names it in errors), after checking their SHA-256."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AffectlabError(f"{path}: {what} missing or unreadable ({exc.strerror}); reinstall affectlab") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise AffectlabError(
            f"{path}: SHA-256 {digest[:12]}... is not the packaged {sha256[:12]}...; reinstall affectlab"
        )
    return data


def packaged_state_dict(path: Path, sha256: str, what: str) -> dict[str, torch.Tensor]:
    """The PyTorch state dict stored in the packaged file ``path``, after checking its SHA-256 (tensors only:
    ``weights_only``). torch is imported here, so that reading a packaged data file does not need it."""
    import io

    import torch

    return torch.load(io.BytesIO(packaged_bytes(path, sha256, what)), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
