from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from affectlab.data.readers import read_dataset
from affectlab.data.split import apply_split, load_split, make_split, save_split
from affectlab.errors import AffectlabError
from conftest import write_affectnet


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    rows = [(str(i), i % 8, 0.1, 0.1) for i in range(200)]
    root = write_affectnet(tmp_path / "d", rows, size=8)
    # Two byte-identical pairs under different ids, one with conflicting labels (as in AffectNet).
    shutil.copy(root / "images" / "3.jpg", root / "images" / "150.jpg")
    shutil.copy(root / "images" / "10.jpg", root / "images" / "11.jpg")
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
    assert where["3"] == where["150"]
    assert where["10"] == where["11"]
    assert split["duplicate_images_grouped"] == 2


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
