"""Named models (``affectlab-base``), accepted wherever a run folder or model file is: predict, evaluate, export,
serve, the web page, ``affectlab.load()`` and the Python API.

As torchvision's weights enums do, each name maps to one file, either inside the package (``models/bundled/``) or
at a URL, with its SHA-256 and size. The file is checked before it is loaded, so a damaged or replaced file is
one line, not wrong predictions. A URL entry is downloaded once into the user's cache (``cache_dir()``) and
checked there every time, so a later release can host a file instead of shipping it without changing any caller.

``resolve_model`` is the one place where a model argument becomes a file: every loader calls it. An existing path
wins over a name (a run folder that happens to be called ``affectlab-base`` is still that run folder).

No PyTorch here (the download imports it when one is needed): the CLI resolves names before torch is imported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from affectlab.config import cache_root
from affectlab.data.suffixes import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from affectlab.errors import AffectlabError

__all__ = [
    "BUNDLED_DIR",
    "DEFAULT_MODEL",
    "MODELS",
    "NamedModel",
    "cache_dir",
    "is_model_reference",
    "model_names",
    "named_model",
    "resolve_model",
]

#: Where packaged model files live (with their MODEL_CARD.md), inside the installed package.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
#: The model a newcomer gets without naming one: ``affectlab predict photo.jpg``, ``affectlab.load()``.
DEFAULT_MODEL = "affectlab-base"

# The bundled file's SHA-256 and size in bytes: printed by ``tools/build_bundled.py``, which rewrites these two
# lines with ``--write-registry``. Until a file is built they name none, and using the name says so in one line.
BASE_SHA256 = "5a078f138cef988c2cfd571a3e8cdc1e1429dfae679a327488845256cda50d8b"
BASE_SIZE = 5936959


@dataclass(frozen=True)
class NamedModel:
    """One named model file: where it is, what it must hash to, and a line about what it is."""

    name: str
    filename: str
    sha256: str
    size: int
    description: str
    url: str | None = None  # None: the file ships in the package, in BUNDLED_DIR

    @property
    def path(self) -> Path:
        """Where the file is (packaged) or goes (downloaded into the cache)."""
        return BUNDLED_DIR / self.filename if self.url is None else cache_dir() / self.filename

    def fetch(self) -> Path:
        """The checked file: the packaged one, or the cached download (downloaded first if it is not there)."""
        path = self.path
        if self.url is not None and not path.is_file():
            _download(self.url, path, self.sha256, self.name)
        return _verified(path, self)


MODELS: dict[str, NamedModel] = {
    model.name: model
    for model in (
        NamedModel(
            name=DEFAULT_MODEL,
            filename="affectlab-base.pt",
            sha256=BASE_SHA256,
            size=BASE_SIZE,
            description="MobileNetV2 multitask (8 emotions + valence/arousal), trained on AffectNet and FER-2013; "
            "non-commercial research use only (see MODEL_CARD.md)",
        ),
    )
}


def model_names() -> list[str]:
    return sorted(MODELS)


def cache_dir() -> Path:
    """Downloaded models: ``models/`` in affectlab's cache (``$AFFECTLAB_CACHE``, else ``~/.cache/affectlab``)."""
    return cache_root() / "models"


def resolve_model(model: str | Path | None) -> Path:
    """The file or run folder that ``model`` names: None is ``DEFAULT_MODEL``; a registered name whose path does
    not exist is its checked file; anything else is a path, returned as it is (the loaders say if it is missing).

    Raises:
        AffectlabError: a named model whose file is missing, damaged or replaced, or an image or video given where
            a model was expected.
    """
    entry = named_model(model)
    if entry is not None:
        return entry.fetch()
    assert model is not None
    path = Path(model).expanduser()
    if path.suffix.lower() in _MEDIA_SUFFIXES and path.is_file():
        raise AffectlabError(
            f"{path}: an image or video, not a model; give a run folder, a .pt or .onnx file, or a named model "
            f"({', '.join(model_names())}), or leave the model out to use {DEFAULT_MODEL}"
        )
    return path


def named_model(model: str | Path | None) -> NamedModel | None:
    """The registry entry ``model`` names (None: the default's), or None when it is a path."""
    if model is None:
        return MODELS[DEFAULT_MODEL]
    if isinstance(model, str) and model in MODELS and not Path(model).exists():
        return MODELS[model]
    return None


def is_model_reference(value: str) -> bool:
    """Whether ``value`` plainly names a model rather than an input: a registered name, a ``.pt`` or ``.onnx``
    file, or a folder holding a model (``model.pt``, a run's ``config.yaml``, or a study's ``*/model.pt``)."""
    path = Path(value).expanduser()
    if value in MODELS or path.suffix.lower() in (".pt", ".onnx"):
        return True
    if not path.is_dir():
        return False
    return (path / "model.pt").exists() or (path / "config.yaml").exists() or any(path.glob("*/model.pt"))


#: Images and videos: given as a model, they are named as what they are (the order of predict's arguments).
_MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
#: Files already checked in this process, by (path, size, modification time): predict, serve and the loaders
#: resolve the same name more than once, and hashing 7 MB each time is wasted.
_CHECKED: set[tuple[str, int, int, str]] = set()


def _verified(path: Path, entry: NamedModel) -> Path:
    where = "in the package" if entry.url is None else "in the model cache"
    fix = "reinstall affectlab" if entry.url is None else "delete it to download it again"
    if not entry.sha256:
        raise AffectlabError(
            f"{entry.name}: this affectlab has no file for it yet (the registry holds no SHA-256); "
            "build it with tools/build_bundled.py, or give a run folder or model file"
        )
    try:
        stat = path.stat()
    except OSError:
        raise AffectlabError(
            f"{entry.name}: model file missing {where} ({path}); {fix}, or give a run folder or model file"
        ) from None
    key = (str(path), stat.st_size, stat.st_mtime_ns, entry.sha256)
    if key in _CHECKED:
        return path
    if stat.st_size != entry.size:
        raise AffectlabError(
            f"{entry.name}: {path} is {stat.st_size} bytes, the registry expects {entry.size}; "
            f"the file is damaged or was replaced ({fix})"
        )
    digest = _sha256(path)
    if digest != entry.sha256:
        raise AffectlabError(
            f"{entry.name}: {path} has SHA-256 {digest[:12]}..., the registry expects {entry.sha256[:12]}...; "
            f"the file is damaged or was replaced ({fix})"
        )
    _CHECKED.add(key)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, path: Path, sha256: str, name: str) -> None:
    """torch.hub's download (a temporary file, renamed when complete and its hash prefix matched)."""
    from torch.hub import download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(url, str(path), hash_prefix=sha256 or None, progress=True)
    except Exception as exc:  # network, HTTP and hash failures all come as different exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise AffectlabError(f"{name}: cannot download {url} into {path.parent} ({first})") from None
