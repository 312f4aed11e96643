"""Readers for the dataset layouts affectlab accepts.

* AffectNet: ``images/<id>.jpg|png`` + ``annotations/<id>_exp.npy``, ``_val.npy``, ``_aro.npy`` (``_lnd.npy``
  optional). The official release stores these as 0-d unicode-string arrays, so values are parsed, not cast.
* AffectNet CSV: ``subDirectory_filePath, face_x, face_y, face_width, face_height, expression, valence,
  arousal`` plus an image root; the face box is kept so the crop matches the annotation.
* Class folders: ``root/<class>/*.jpg``, classification only.
* FER+: images and a headerless ``label.csv`` of ten crowd vote counts per face (``data.ferplus``).

Non-emotion codes 8-10 and the valence/arousal sentinel -2 are excluded and counted, never silently dropped.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np

from affectlab.data.ferplus import is_ferplus, read_ferplus
from affectlab.data.samples import IMAGE_SUFFIXES, Problem, Sample, SampleSet, natural_key
from affectlab.errors import AffectlabError
from affectlab.labels import AFFECTNET_NON_EMOTION_CODES, EMOTIONS, VA_SENTINEL

__all__ = ["DEFAULT_FOLDER_ALIASES", "detect_layout", "read_dataset"]

CSV_COLUMNS = ("subDirectory_filePath", "expression", "valence", "arousal")

#: Folder names seen in public face-expression sets (FER2013, RAF-DB style), mapped to AffectNet classes.
DEFAULT_FOLDER_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in EMOTIONS},
    "happiness": "Happy",
    "sadness": "Sad",
    "surprised": "Surprise",
    "fearful": "Fear",
    "afraid": "Fear",
    "disgusted": "Disgust",
    "angry": "Anger",
    "contemptuous": "Contempt",
    **{str(i): name for i, name in enumerate(EMOTIONS)},
}


def detect_layout(path: Path) -> str:
    """The layout of ``path``; FER+ is recognised by its vote rows (a box and ten integer counts), never by name."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return "ferplus" if is_ferplus(path) else "csv"
    if (path / "images").is_dir() and (path / "annotations").is_dir():
        return "affectnet"
    if path.is_dir() and is_ferplus(path):
        return "ferplus"
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return "folders"
    raise AffectlabError(
        f"{path}: not a dataset: expected images/ and annotations/ (AffectNet), a .csv file, class folders, or "
        "a FER+ label.csv"
    )


def read_dataset(
    path: str | Path,
    layout: str = "auto",
    image_root: str | Path | None = None,
    class_map: dict[str, str] | None = None,
    on_bad_sample: str = "skip",
) -> SampleSet:
    """Read a dataset's labels (images are not decoded here) and record every problem met on the way."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AffectlabError(f"{path}: no such file or folder")
    layout = detect_layout(path) if layout == "auto" else layout
    if layout not in ("affectnet", "csv", "folders", "ferplus"):
        raise AffectlabError(f"unknown layout {layout!r}; use one of auto, affectnet, csv, folders, ferplus")
    if layout == "ferplus":
        result = read_ferplus(path, Path(image_root) if image_root else None)
    elif layout == "csv":
        result = _read_csv(path, Path(image_root) if image_root else path.parent)
    elif layout == "folders":
        result = _read_folders(path, class_map or {})
    else:
        result = _read_affectnet(path)
    fatal = [p for p in result.problems if p.fatal]
    if fatal and on_bad_sample == "error":
        raise AffectlabError(f"{fatal[0]} ({len(fatal)} bad sample(s); use --on-bad-sample skip to skip them)")
    if not result.samples:
        raise AffectlabError(f"{path}: dataset is empty (no usable samples; {result.exclusion_summary()})")
    return result


#: An annotation holds one value; its header is checked before the array is read, so a header claiming
#: 10^11 elements is a problem record, not a MemoryError.
MAX_SCALAR_BYTES = 4096


def _load_scalar(path: Path) -> str:
    """Read a 0-d .npy as text: AffectNet stores numbers as unicode strings, others store real numbers."""
    with path.open("rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            header_reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in header_reader:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = header_reader[version](handle)
        except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors...
            raise ValueError(
                f"not a .npy file ({str(exc).splitlines()[0][:100] if str(exc) else 'bad header'})"
            ) from None
        count = int(np.prod(shape, dtype=object))
        if count != 1:
            raise ValueError(f"expected a single value, found shape {shape}")
        if dtype.hasobject or dtype.itemsize > MAX_SCALAR_BYTES:
            raise ValueError(f"expected a number or a short string, found dtype {dtype}")
        handle.seek(0)
        arr = np.load(handle, allow_pickle=False)
    return str(arr.reshape(()).item()).strip()


def _check_va(valence: float, arousal: float) -> str | None:
    for name, value in (("valence", valence), ("arousal", arousal)):
        if not math.isfinite(value) or not -1.0 <= value <= 1.0:
            return f"{name} {value} outside [-1, 1]"
    return None


def _label_from_values(
    sample_id: str, image: Path, exp: str, val: str, aro: str, excluded: Counter[str]
) -> Sample | str | None:
    """Turn raw annotation text into a Sample, an error message, or None when excluded by design."""
    try:
        code = int(float(exp))
        valence, arousal = float(val), float(aro)
    except ValueError:
        return f"malformed annotation (expression={exp!r}, valence={val!r}, arousal={aro!r})"
    if code in AFFECTNET_NON_EMOTION_CODES:
        excluded["with non-emotion code 8-10"] += 1
        return None
    if not 0 <= code < len(EMOTIONS):
        return f"expression code {code} outside 0-10"
    if valence == VA_SENTINEL or arousal == VA_SENTINEL:
        excluded["with valence/arousal sentinel -2"] += 1
        return None
    bad = _check_va(valence, arousal)
    if bad:
        return bad
    return Sample(id=sample_id, path=image, expression=code, valence=valence, arousal=arousal)


def _read_affectnet(root: Path) -> SampleSet:
    images_dir, ann_dir = root / "images", root / "annotations"
    result = SampleSet(root=root, layout="affectnet", samples=[], class_names=EMOTIONS)
    images = sorted(
        (p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.stem)
    )
    seen: set[str] = set()
    for image in images:
        sample_id = image.stem
        seen.add(sample_id)
        files = {k: ann_dir / f"{sample_id}_{k}.npy" for k in ("exp", "val", "aro")}
        missing = [f.name for f in files.values() if not f.is_file()]
        if missing:
            result.problems.append(Problem(str(image), f"missing annotation {', '.join(missing)}"))
            continue
        try:
            values = {k: _load_scalar(f) for k, f in files.items()}
        except (ValueError, OSError, EOFError, MemoryError) as exc:
            result.problems.append(Problem(str(image), f"unreadable annotation: {exc}"))
            continue
        label = _label_from_values(sample_id, image, values["exp"], values["val"], values["aro"], result.excluded)
        if isinstance(label, str):
            result.problems.append(Problem(str(files["exp"].with_name(f"{sample_id}_*.npy")), label))
        elif label is not None:
            result.samples.append(label)
    orphans = {p.name.rsplit("_", 1)[0] for p in ann_dir.glob("*_exp.npy")} - seen
    for orphan in sorted(orphans, key=natural_key)[:20]:
        result.problems.append(Problem(str(ann_dir / f"{orphan}_exp.npy"), "annotation without image", fatal=False))
    return result


def _read_csv(csv_path: Path, image_root: Path) -> SampleSet:
    result = SampleSet(root=image_root, layout="csv", samples=[], class_names=EMOTIONS)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AffectlabError(f"{csv_path}: missing column(s) {', '.join(missing)}")
        for line_no, row in enumerate(reader, start=2):
            rel = (row["subDirectory_filePath"] or "").strip()
            image = image_root / rel
            where = f"{csv_path}:{line_no}"
            if not rel or not image.is_file():
                result.problems.append(Problem(where, f"image {image} not found"))
                continue
            label = _label_from_values(rel, image, row["expression"], row["valence"], row["arousal"], result.excluded)
            if isinstance(label, str):
                result.problems.append(Problem(where, label))
                continue
            if label is None:
                continue
            box = _parse_box(row)
            if box == "bad":
                result.problems.append(Problem(where, "malformed face box"))
                continue
            result.samples.append(Sample(**{**label.__dict__, "box": box}))
    return result


def _parse_box(row: dict[str, str]) -> tuple[int, int, int, int] | None | str:
    keys = ("face_x", "face_y", "face_width", "face_height")
    if not all((row.get(k) or "").strip() for k in keys):
        return None
    try:
        x, y, w, h = (int(float(row[k])) for k in keys)
    except ValueError:
        return "bad"
    return (x, y, w, h) if w > 0 and h > 0 and x >= 0 and y >= 0 else "bad"


def _read_folders(root: Path, class_map: dict[str, str]) -> SampleSet:
    aliases = {**DEFAULT_FOLDER_ALIASES, **{k.lower(): v for k, v in class_map.items()}}
    result = SampleSet(root=root, layout="folders", samples=[], class_names=EMOTIONS)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        target = aliases.get(folder.name.lower())
        if target is None or target not in EMOTIONS:
            raise AffectlabError(
                f"{folder}: folder name {folder.name!r} is not an emotion class; map it with "
                f"--class-map {folder.name}=<{'|'.join(EMOTIONS)}>"
            )
        code = EMOTIONS.index(target)
        for image in sorted(folder.rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                rel = image.relative_to(root).as_posix()
                result.samples.append(Sample(id=rel, path=image, expression=code))
    return result
