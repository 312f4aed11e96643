"""``affectlab predict --shard I/N``: the parts of a job array together give exactly the unsharded run's records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from affectlab.batch.sharding import parse_shard, take_shard
from affectlab.cli import main
from affectlab.data.demo import generate_demo_dataset


@pytest.fixture(scope="module")
def faces(work: Path) -> Path:
    """Eleven face crops in two folders, so that the expanded list crosses a folder boundary."""
    demo = generate_demo_dataset(work / "demo", n_per_class=2, image_size=64, seed=3)
    root = work / "faces"
    for i, image in enumerate(sorted((demo / "images").glob("*.png"))[:11]):
        target = root / ("a" if i < 6 else "b") / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
    return root


def test_shards_together_equal_the_unsharded_run(run: Path, faces: Path, tmp_path: Path) -> None:
    common = ["predict", str(run), str(faces), "--detector", "none", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "all.jsonl")]) == 0
    whole = (tmp_path / "all.jsonl").read_text().splitlines()
    assert len(whole) == 11
    parts = []
    for index in range(4):
        out = tmp_path / f"part-{index}.jsonl"
        assert main([*common, "--shard", f"{index}/4", "--out", str(out)]) == 0
        parts.append(out.read_text().splitlines())
    assert [len(p) for p in parts] == [2, 3, 3, 3]
    together = [json.loads(line) for part in parts for line in part]
    assert [_flat(r) for r in together] == [pytest.approx(_flat(json.loads(line)), abs=1e-5) for line in whole]


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested record -> flat {path: value}; a batch of another size may change the 6th decimal of a probability."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat.update(_flat(dict(enumerate(value)), f"{prefix}{key}."))  # type: ignore[arg-type]
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_shard_blocks_are_disjoint_contiguous_and_cover_the_list() -> None:
    items = list(range(10))
    blocks = [take_shard(items, i, 3) for i in range(3)]
    assert blocks == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert [take_shard(items[:2], i, 3) for i in range(3)] == [[], [0], [1]] and take_shard([], 0, 2) == []
    assert parse_shard(" 2 / 8 ") == (2, 8)


@pytest.mark.parametrize("text", ["8/8", "1", "a/b", "0/0"])
def test_a_bad_shard_is_one_clear_line(run: Path, faces: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(run), str(faces), "--shard", text, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"affectlab: error: --shard {text}")
