from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from support.data import write_affectnet

from affectlab.data.readers import read_dataset
from affectlab.data.split import apply_split, load_split, make_split, save_split
from affectlab.errors import AffectlabError

#: Byte-identical copies in the fixture: a pair with conflicting labels (as in AffectNet: Surprise and Anger), and a
#: group of five with one label (Sad), larger than its class's test or validation quota (about 4 each).
CONFLICTING_PAIR = ["3", "150"]
BIG_GROUP = ["2", "10", "18", "26", "34"]


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    rows = [(str(i), i % 8, 0.1, 0.1) for i in range(200)]
    root = write_affectnet(tmp_path / "d", rows, size=8)
    for group in (CONFLICTING_PAIR, BIG_GROUP):
        for copy in group[1:]:
            shutil.copy(root / "images" / f"{group[0]}.jpg", root / "images" / f"{copy}.jpg")
    return root


def test_split_sizes_are_exact_stratified_and_deterministic(dataset: Path) -> None:
    samples = read_dataset(dataset).samples
    split = make_split(samples, seed=0)
    assert split["counts"] == {"train": 140, "val": 30, "test": 30}
    assert split == make_split(samples, seed=0)
    assert split["test"] != make_split(samples, seed=1)["test"]
    by_id = {s.id: s.expression for s in samples}
    per_class = Counter(by_id[i] for i in split["test"])
    assert max(per_class.values()) - min(per_class.values()) <= 1
    assert sorted(split["train"] + split["val"] + split["test"], key=int) == [str(i) for i in range(200)]


@pytest.mark.parametrize("seed", range(6))
def test_identical_images_share_a_split(dataset: Path, seed: int) -> None:
    split = make_split(read_dataset(dataset).samples, seed=seed)
    where = {i: name for name in ("train", "val", "test") for i in split[name]}
    assert len({where[i] for i in CONFLICTING_PAIR}) == 1
    # Five copies fit neither the test nor the validation quota of their class: all of them train, none leaks.
    assert {where[i] for i in BIG_GROUP} == {"train"}
    assert split["duplicate_images_grouped"] == 1 + 4
    assert split["counts"] == {"train": 140, "val": 30, "test": 30}


def test_split_file_round_trip_and_mismatch(dataset: Path, tmp_path: Path) -> None:
    samples = read_dataset(dataset).samples
    path = save_split(make_split(samples), tmp_path / "split.json")
    parts = apply_split(samples, load_split(path))
    assert [len(parts[n]) for n in ("train", "val", "test")] == [140, 30, 30]
    with pytest.raises(AffectlabError, match="not in the dataset"):
        apply_split(samples[:100], load_split(path), str(path))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AffectlabError, match="bad.json: not valid JSON"):
        load_split(tmp_path / "bad.json")
