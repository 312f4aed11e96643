"""The FER+ layout: face images and a headerless ``label.csv`` of crowd votes.

Each row is ``fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0``: the image's name, its face box, then ten vote
counts in FER+'s order (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF). Two
trees are read:

* one folder with the images and its ``label.csv`` (or the ``label.csv`` itself): split by affectlab as any dataset;
* FER+'s official download, ``FER2013Train``, ``FER2013Valid`` and ``FER2013Test``, each with its ``label.csv``:
  FER+'s own split (train, val, test) is kept, ids prefixed by their folder.

The votes are kept per face in affectlab's class order (``data.votes``). A face whose top vote is unknown or NF
(alone or tied) names no emotion and is excluded, counted by kind; a tie between emotions has no majority label
(``expression`` None) but keeps its votes. Every bad row (short, missing image, non-integer or negative counts, no
votes at all, malformed box, listed twice) is one problem naming the file and line. The box is checked, not used:
FER+ faces are pre-cropped 48 px images whose box is the whole image.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from affectlab.data.samples import IMAGE_SUFFIXES, Problem, Sample, SampleSet, natural_key
from affectlab.data.votes import NOT_A_FACE, TIE, UNKNOWN, majority
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS

__all__ = [
    "EXCLUDED_NF",
    "EXCLUDED_TIE",
    "EXCLUDED_UNKNOWN",
    "FERPLUS_FOLDERS",
    "LABEL_FILE",
    "is_ferplus",
    "read_ferplus",
]

LABEL_FILE = "label.csv"
#: The official download's folders and the split each one is.
FERPLUS_FOLDERS: dict[str, str] = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
#: FER+'s vote columns in file order -> the index in a sample's votes (affectlab's class order, unknown, NF).
_FILE_TO_VOTES = (0, 1, 3, 2, 6, 5, 4, 7, 8, 9)  # neutral, happiness, surprise, sadness, anger, disgust, fear, ...
_FIELDS = 2 + len(_FILE_TO_VOTES)
_BOX = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")
#: Why a face was excluded (``SampleSet.excluded`` keys): a top vote of unknown or NF, alone or tied.
EXCLUDED_UNKNOWN = "with top vote unknown"
EXCLUDED_NF = "with top vote not-a-face (NF)"
EXCLUDED_TIE = "with top vote tied with unknown or NF"


class _Excluded(str):
    """Why a well-formed row names no emotion (not a problem: the crowd said so)."""


def _looks_like_votes(label_file: Path, rows: int = 20) -> bool:
    """A label file with a vote row (a name, a box and ten integer counts) among its first ``rows``: no other
    layout's file has one, and a damaged first row still leaves the file recognised (and its problems reported)."""
    try:
        with label_file.open(newline="", encoding="utf-8") as handle:
            first = [row for _, row in zip(range(rows), csv.reader(handle), strict=False)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return any(
        len(row) == _FIELDS and bool(_BOX.match(row[1].strip())) and all(v.strip().isdigit() for v in row[2:])
        for row in first
    )


def is_ferplus(path: Path) -> bool:
    """Whether ``path`` is a FER+ vote file, a folder with one, or the official three-folder tree."""
    if path.is_file():
        return _looks_like_votes(path)
    if (path / LABEL_FILE).is_file():
        return _looks_like_votes(path / LABEL_FILE)
    files = [path / folder / LABEL_FILE for folder in FERPLUS_FOLDERS]
    return any(f.is_file() for f in files) and all(_looks_like_votes(f) for f in files if f.is_file())


def read_ferplus(path: Path, image_root: Path | None = None) -> SampleSet:
    """The faces of a FER+ label file, folder or official tree, with their votes; problems and exclusions noted."""
    if path.is_file():
        return _read_label_file(path, image_root or path.parent, path.parent, "")
    if (path / LABEL_FILE).is_file():
        return _read_label_file(path / LABEL_FILE, image_root or path, path, "")
    parts = [folder for folder in FERPLUS_FOLDERS if (path / folder / LABEL_FILE).is_file()]
    missing = [folder for folder in FERPLUS_FOLDERS if folder not in parts]
    if missing:
        raise AffectlabError(
            f"{path}: FER+ tree lacks {', '.join(f'{m}/{LABEL_FILE}' for m in missing)} (its split needs all three)"
        )
    result = SampleSet(root=path, layout="ferplus", samples=[], class_names=EMOTIONS)
    split: dict[str, list[str]] = {}
    for folder in parts:
        part = _read_label_file(path / folder / LABEL_FILE, path / folder, path, f"{folder}/")
        result.samples += part.samples
        result.problems += part.problems
        result.excluded.update(part.excluded)
        split[FERPLUS_FOLDERS[folder]] = sorted((s.id for s in part.samples), key=natural_key)
    result.split = {
        "seed": None,
        "val_fraction": None,
        "test_fraction": None,
        "given": "FER+ folders " + ", ".join(f"{folder}={name}" for folder, name in FERPLUS_FOLDERS.items()),
        "counts": {name: len(ids) for name, ids in split.items()},
        "duplicate_images_grouped": 0,
        **split,
    }
    return result


def _read_label_file(label_file: Path, image_dir: Path, root: Path, prefix: str) -> SampleSet:
    result = SampleSet(root=root, layout="ferplus", samples=[], class_names=EMOTIONS)
    present = {p.name for p in image_dir.iterdir()} if image_dir.is_dir() else set()
    listed: set[str] = set()
    with label_file.open(newline="", encoding="utf-8") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not any(field.strip() for field in row):
                continue
            where = f"{label_file}:{line_no}"
            sample = _sample(row, image_dir, present, listed, prefix)
            if isinstance(sample, _Excluded):
                result.excluded[str(sample)] += 1
            elif isinstance(sample, str):
                result.problems.append(Problem(where, sample))
            else:
                result.samples.append(sample)
    unlisted = sorted((n for n in present - listed if Path(n).suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    for name in unlisted[:20]:
        result.problems.append(Problem(str(image_dir / name), f"image not listed in {label_file.name}", fatal=False))
    return result


def _sample(row: list[str], image_dir: Path, present: set[str], listed: set[str], prefix: str) -> Sample | str:
    """A row as a Sample, a problem message, or why it is excluded (``_Excluded``)."""
    if len(row) < _FIELDS:
        return f"short row: {len(row)} field(s), expected {_FIELDS} (name, face box, 10 vote counts)"
    if len(row) > _FIELDS:
        return f"long row: {len(row)} fields, expected {_FIELDS} (name, face box, 10 vote counts)"
    name = row[0].strip()
    if name in listed:
        return f"image {name} listed twice"
    listed.add(name)
    if not name or name not in present:
        return f"image {image_dir / name} not found"
    if not _BOX.match(row[1].strip()):
        return f"malformed face box {row[1]!r} (expected '(x, y, w, h)')"
    try:
        counts = [int(v) for v in row[2:]]
    except ValueError:
        return f"vote counts must be integers, found {', '.join(v.strip() for v in row[2:])}"
    if any(c < 0 for c in counts):
        return f"negative vote count in {', '.join(map(str, counts))}"
    if not sum(counts):
        return "no votes (all 10 counts are 0)"
    votes = tuple(counts[_FILE_TO_VOTES.index(i)] for i in range(len(counts)))
    top = majority(votes)
    if top in (UNKNOWN, NOT_A_FACE):
        tied = votes.count(max(votes)) > 1
        return _Excluded(EXCLUDED_TIE if tied else EXCLUDED_UNKNOWN if top == UNKNOWN else EXCLUDED_NF)
    return Sample(
        id=prefix + name, path=image_dir / name, expression=None if top == TIE else top, votes=votes, box=None
    )
