"""Loading backbone weights through torchvision's weights API, with errors a user can act on.

``imagenet`` means torchvision's ``IMAGENET1K_V1`` entry, the original ImageNet training that the reference study's
Keras weights also follow (torchvision's newer ``DEFAULT`` differs per model); any entry name such as
``IMAGENET1K_V2`` can be asked for explicitly. Loading goes through the weights API exactly as torchvision does
(cache first, then download), so a file placed in ``$TORCH_HOME/hub/checkpoints`` is used offline. ``none`` is
random initialisation. Any other value is a path to a state dict of the same torchvision architecture.

Every weights file is read with ``torch.load(weights_only=True)``, so a planted file cannot run code. torchvision
itself unpickles a cached file fully and checks its hash only when it downloads it; affectlab checks the SHA-256
prefix that torchvision's file names carry (``mobilenet_v2-b0353104.pth``) on every load, as torchvision does for
downloads, so a file placed in the cache is the published one or is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import WeightsEnum

from affectlab.errors import AffectlabError
from affectlab.models.backbones import BackboneSpec, get_backbone_spec

__all__ = ["IMAGENET", "Backbone", "cache_path", "load_verified_weights", "resolve_backbone"]

#: torchvision's (and torch.hub's) file-name convention: ``name-<first hex digits of the SHA-256>.pth``.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


def cache_path(weights: WeightsEnum) -> Path:
    """Where torchvision looks for this weights file before downloading it."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


IMAGENET = "IMAGENET1K_V1"


@dataclass(frozen=True)
class Backbone:
    """A backbone name and a weights setting, resolved once: the spec, torchvision's weights entry (None for
    ``none`` and files), the mean/std its weights expect, and a stable label for reports and cache keys.

    Everything that builds, preprocesses for, caches features of or describes a model receives this object, so
    a backbone is looked up in one place.
    """

    spec: BackboneSpec
    weights: str
    entry: WeightsEnum | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        """Human wording for reports: which weights a run really started from."""
        if self.entry is not None:
            return f"ImageNet, real ({self.label})"
        if self.weights == self.spec.packaged:
            return f"packaged with affectlab ({self.label})"
        if self.weights == "none":
            return "random init (no pretraining)"
        return f"file {self.weights}"

    def build_trunk(self) -> nn.Module:
        """The torchvision model with these weights, cut to its last feature map."""
        return self.spec.trunk(build_pretrained(self.spec, self.weights))


def resolve_backbone(name: str, weights: str = "imagenet") -> Backbone:
    """``name`` and ``weights`` (imagenet | none | a torchvision entry name | PATH) as one ``Backbone``."""
    spec = get_backbone_spec(name)
    mean, std = normalisation(spec, weights)
    return Backbone(spec, weights, weights_entry(spec, weights), mean, std, weights_label(spec, weights))


def weights_entry(spec: BackboneSpec, weights: str) -> WeightsEnum | None:
    """The torchvision weights entry named by ``weights`` ('imagenet' or an entry name), else None."""
    if spec.weights is None:
        return None
    name = IMAGENET if weights == "imagenet" else weights
    return spec.weights.__members__.get(name)


def normalisation(spec: BackboneSpec, weights: str = "imagenet") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from the weights' own preprocessing metadata (ImageNet's for random init and files); the
    spec's own for a trunk without torchvision weights."""
    if spec.weights is None:
        return spec.mean, spec.std
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
    if weights == spec.packaged:
        return f"packaged:{spec.packaged}"
    path = Path(weights).expanduser().resolve()
    stat = path.stat() if path.exists() else None
    return f"file:{path}:{stat.st_size if stat else 0}:{int(stat.st_mtime) if stat else 0}"


def build_pretrained(spec: BackboneSpec, weights: str) -> nn.Module:
    """Build the torchvision model for ``spec`` with the requested weights."""
    if weights == "none":
        return spec.build(weights=None)
    if spec.load_packaged is not None and weights == spec.packaged:
        return spec.load_packaged()
    if spec.weights is None and weights == "imagenet":
        raise AffectlabError(
            f"backbone {spec.name} has no ImageNet weights: use --weights {spec.packaged} (its own), none or PATH"
        )
    enum = weights_entry(spec, weights)
    if enum is not None:
        path = cache_path(enum)
        if not path.is_file():
            _download(spec, enum, path)
        match = HASH_IN_NAME.search(path.name)
        return _from_file(spec, path, match.group(1) if match else None, num_classes=len(enum.meta["categories"]))
    return _from_file(spec, Path(weights).expanduser())


def _download(spec: BackboneSpec, enum: WeightsEnum, path: Path) -> None:
    """torchvision's download, hash-checked as torchvision checks it; offline, one line saying where to put it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        match = HASH_IN_NAME.search(path.name)
        torch.hub.download_url_to_file(enum.url, str(path), match.group(1) if match else None, progress=False)
    except (URLError, OSError, RuntimeError) as exc:
        raise AffectlabError(
            f"ImageNet weights for {spec.name} are not available ({type(exc).__name__}): put "
            f"{path.name} in {path.parent} (or set TORCH_HOME), or pass --weights none|PATH"
        ) from None


def load_verified_weights(path: str | Path, expected: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)``, after checking that the file's SHA-256 starts with ``expected``."""
    path = Path(path)
    if expected:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if not digest.startswith(expected):
            raise AffectlabError(
                f"{path}: SHA-256 starts with {digest[: len(expected)]}, not {expected} as its name promises; "
                "this is not the published file: delete it and put the original there"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or unsafe file; all mean the same to a user
        raise AffectlabError(f"{path}: not a PyTorch state dict ({type(exc).__name__})") from None


def _from_file(spec: BackboneSpec, path: Path, expected: str | None = None, **build_args: Any) -> nn.Module:
    if not path.is_file():
        raise AffectlabError(f"{path}: weights file not found (use --weights imagenet|none|PATH)")
    state = load_verified_weights(path, expected)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = spec.build(weights=None, **build_args)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise AffectlabError(f"{path}: does not fit torchvision {spec.name} ({first[:160]})") from None
    return model
