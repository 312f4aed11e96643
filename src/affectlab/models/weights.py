"""Loading backbone weights through torchvision's weights API, with errors a user can act on.

``imagenet`` means torchvision's ``IMAGENET1K_V1`` entry, the original ImageNet training that the reference study's
Keras weights also follow (torchvision's newer ``DEFAULT`` differs per model); any entry name such as
``IMAGENET1K_V2`` can be asked for explicitly. Loading goes through the weights API exactly as torchvision does
(cache first, then download), so a file placed in ``$TORCH_HOME/hub/checkpoints`` is used offline. ``none`` is
random initialisation. Any other value is a path to a state dict of the same torchvision architecture.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch
import torch.nn as nn
from torchvision.models import WeightsEnum

from affectlab.errors import AffectlabError
from affectlab.models.registry import BackboneSpec

__all__ = ["build_pretrained", "normalisation", "cache_path", "weights_label", "weights_entry", "IMAGENET"]


def cache_path(weights: WeightsEnum) -> Path:
    """Where torchvision looks for this weights file before downloading it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


IMAGENET = "IMAGENET1K_V1"


def weights_entry(spec: BackboneSpec, weights: str) -> WeightsEnum | None:
    """The torchvision weights entry named by ``weights`` ('imagenet' or an entry name), else None."""
    name = IMAGENET if weights == "imagenet" else weights
    return spec.weights.__members__.get(name)


def normalisation(spec: BackboneSpec, weights: str = "imagenet") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from the weights' own preprocessing metadata (ImageNet's for random init and files)."""
    entry = weights_entry(spec, weights) or spec.weights[IMAGENET]
    transforms = entry.transforms()
    return tuple(transforms.mean), tuple(transforms.std)


def weights_label(spec: BackboneSpec, weights: str) -> str:
    """A stable description of the weights, for reports and cache keys."""
    entry = weights_entry(spec, weights)
    if entry is not None:
        return str(entry)
    if weights == "none":
        return "random-init"
    path = Path(weights).expanduser().resolve()
    stat = path.stat() if path.exists() else None
    return f"file:{path}:{stat.st_size if stat else 0}:{int(stat.st_mtime) if stat else 0}"


def build_pretrained(spec: BackboneSpec, weights: str) -> nn.Module:
    """Build the torchvision model for ``spec`` with the requested weights."""
    if weights == "none":
        return spec.build(weights=None)
    enum = weights_entry(spec, weights)
    if enum is not None:
        try:
            return spec.build(weights=enum, progress=False)
        except (URLError, OSError, RuntimeError) as exc:
            where = cache_path(enum)
            raise AffectlabError(
                f"ImageNet weights for {spec.name} are not available ({type(exc).__name__}): put "
                f"{where.name} in {where.parent} (or set TORCH_HOME), or pass --weights none|PATH"
            ) from None
    return _from_file(spec, Path(weights).expanduser())


def _from_file(spec: BackboneSpec, path: Path) -> nn.Module:
    if not path.is_file():
        raise AffectlabError(f"{path}: weights file not found (use --weights imagenet|none|PATH)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same to a user
        raise AffectlabError(f"{path}: not a PyTorch state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = spec.build(weights=None)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise AffectlabError(f"{path}: does not fit torchvision {spec.name} ({first[:160]})") from None
    return model
