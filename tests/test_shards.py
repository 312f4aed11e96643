"""Converted datasets: ``affectlab data convert`` writes LitData shards that keep the raw dataset's samples, labels
and split, training streams them (each sample once per epoch across ranks and workers), and a run on them ends
like a run on the raw folder."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from litdata.utilities.env import _DistributedEnv

from affectlab.cli import main
from affectlab.config import DataConfig
from affectlab.data.prepared import prepare_data, sample_hash
from affectlab.data.readers import read_dataset
from affectlab.data.streaming import open_converted
from affectlab.data.transforms import Preprocess
from affectlab.training.streaming import FaceStream, FaceStreamLoader

SIZE = 32


@pytest.fixture(scope="module")
def raw(demo_data: Path, work: Path) -> Path:
    """The demo faces plus a byte-identical copy under a new id (a duplicate group) and one corrupt image."""
    root = work / "raw"
    shutil.copytree(demo_data, root)
    shutil.copy(root / "images" / "5.png", root / "images" / "1005.png")
    for key in ("exp", "val", "aro"):
        shutil.copy(root / "annotations" / f"5_{key}.npy", root / "annotations" / f"1005_{key}.npy")
    (root / "images" / "7.png").write_bytes(b"\x89PNG not a png")
    return root


@pytest.fixture(scope="module")
def converted(raw: Path, work: Path) -> tuple[Path, str]:
    out = work / "converted"
    code = main(["data", "convert", str(raw), "--out", str(out), "--input-size", str(SIZE), "--workers", "2"])
    assert code == 0
    return out, str(raw / "images" / "7.png")


def test_conversion_keeps_ids_labels_split_and_duplicate_groups(raw: Path, converted: tuple[Path, str]) -> None:
    out, corrupt = converted
    manifest = json.loads((out / "manifest.json").read_text())
    reference = prepare_data(DataConfig(path=str(raw)), SIZE)  # the in-RAM path on the same folder
    assert manifest["split"] == reference.split  # the same split, drawn once with the same seed and ratios
    assert manifest["format_version"] == 1 and manifest["settings"]["input_size"] == SIZE
    assert manifest["skipped"] == [f"{corrupt}: not a readable image (corrupt or unsupported format)"]
    labels = {s.id: s for s in read_dataset(raw).samples}
    streamed = open_converted(DataConfig(path=str(out)), SIZE)
    for name, part in streamed.splits.items():
        mine = reference.splits[name]
        assert part.ids == mine.ids  # the same faces in the same order, the corrupt one left out
        assert manifest["counts"][name] == len(part)
        np.testing.assert_array_equal(part.expression, [labels[i].expression for i in part.ids])
        np.testing.assert_allclose(part.va, [[labels[i].valence, labels[i].arousal] for i in part.ids], atol=1e-6)
        assert part.hashes == [sample_hash(labels[i]) for i in part.ids]
        counts = manifest["class_counts"][name]
        assert sum(counts.values()) == len(part)
        # JPEG at quality 95 of the same crop: close to the in-RAM decode, pixel for pixel.
        assert np.abs(part.images[:8].astype(int) - mine.images[:8].astype(int)).mean() < 3
    assert "7" not in streamed.splits["train"].ids + streamed.splits["val"].ids + streamed.splits["test"].ids
    where = {i: name for name in ("train", "val", "test") for i in manifest["split"][name]}
    assert where["5"] == where["1005"] and manifest["split"]["duplicate_images_grouped"] >= 1


def test_conversion_refuses_a_non_empty_folder_and_names_a_corrupt_image(
    raw: Path, converted: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, corrupt = converted
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["data", "convert", str(raw), "--out", str(out), "--input-size", str(SIZE), "--workers", "1"]) == 2
    assert "folder exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before  # untouched
    code = main(
        [
            "data",
            "convert",
            str(raw),
            "--out",
            str(tmp_path / "strict"),
            "--input-size",
            str(SIZE),
            "--workers",
            "1",
            "--on-bad-sample",
            "error",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"affectlab: error: {corrupt}: not a readable image (corrupt or unsupported format)"]
    assert not (tmp_path / "strict").exists()  # a failed conversion leaves nothing behind


def _epoch(folder: Path, epoch: int, drop_last: bool) -> list[list[int]]:
    """The sample indices each of 2 simulated ranks (LitData's own distributed env) gets, 2 loader workers each."""
    per_rank = []
    for rank in (0, 1):
        stream = FaceStream(str(folder), Preprocess(input_size=SIZE), seed=0, with_index=True)
        stream.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        stream.set_drop_last(drop_last)
        loader = FaceStreamLoader(stream, batch_size=4, num_workers=2)
        loader.current_epoch = epoch - 1  # the loader counts its epochs; this makes its iterator the epoch-th one
        per_rank.append([int(i) for *_, index in loader for i in index])
        assert len(per_rank[-1]) == len(stream)
    return per_rank


def test_every_sample_once_per_epoch_across_two_ranks_and_two_workers(converted: tuple[Path, str]) -> None:
    out, _ = converted
    n = len(open_converted(DataConfig(path=str(out)), SIZE).splits["train"])
    assert n % 2 == 1, "an odd count: the case where ranks cannot get equal shares"
    orders = []
    for epoch in (1, 2):
        first, second = _epoch(out / "train", epoch, drop_last=False)
        assert sorted(first + second) == list(range(n)), f"epoch {epoch}: each training sample exactly once"
        orders.append(first + second)
        # Under DDP (drop_last, set when the process group is found): equal shares, still no sample twice, and only
        # the few that do not fill a batch on every worker left out of this epoch.
        first, second = _epoch(out / "train", epoch, drop_last=True)
        assert len(first) == len(second) and len(set(first + second)) == len(first + second) > n - 2 * 2 * 4
    assert orders[0] != orders[1], "each epoch reshuffles"


@pytest.mark.slow
def test_training_on_converted_data_runs_end_to_end_with_the_same_split(
    raw: Path, converted: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = converted
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(out),
                "--backbone",
                "resnet18",
                "--weights",
                "none",
                "--no-freeze",
                "--input-size",
                str(SIZE),
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--out",
                str(run),
                "--quiet",
                "--accelerator",
                "cpu",
            ]
        )
        == 0
    )
    record = json.loads((run / "run.json").read_text())
    reference = prepare_data(DataConfig(path=str(raw)), SIZE)
    assert record["data"]["counts"] == {name: len(part) for name, part in reference.splits.items()}
    assert json.loads((run / "split.json").read_text()) == reference.split
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == len(reference.splits["test"]) and "classification" in metrics
    assert main(["evaluate", str(run), "--split", "val", "--out", str(tmp_path / "val")]) == 0
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["n"] == len(reference.splits["val"])


@pytest.mark.slow
def test_ddp_ranks_stream_equal_halves_of_the_training_split(converted: tuple[Path, str], tmp_path: Path) -> None:
    """Two real DDP processes (gloo): LitData learns the rank from the process group Lightning starts inside fit,
    after the loaders were built, so each rank streams half the split (not all of it), in equal batch counts."""
    out, _ = converted
    probe = Path(__file__).parent / "support" / "ddp_stream_probe.py"
    done = subprocess.run(
        [sys.executable, str(probe), str(out), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    n = len(open_converted(DataConfig(path=str(out)), SIZE).splits["train"])
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for rank, epochs in enumerate(ranks):
        assert [(e["world_size"], e["rank"]) for e in epochs] == [(2, rank), (2, rank)]
    batches = [[e["batches"] for e in epochs] for epochs in ranks]
    assert batches[0] == batches[1] and 0 < batches[0][0] <= math.ceil(n / 2 / 8)
    assert (tmp_path / "run" / "model.pt").is_file()
