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
import torch
from litdata.utilities.env import _DistributedEnv

from affectlab.cli import main
from affectlab.config import DataConfig, ModelConfig
from affectlab.data.converted import open_converted
from affectlab.data.dataset import open_dataset
from affectlab.data.face_tensors import FaceToTensor
from affectlab.data.readers import read_dataset
from affectlab.data.shard_stream import FaceStream, FaceStreamLoader
from affectlab.data.source import sample_hash
from affectlab.data.transforms import Preprocess
from affectlab.errors import AffectlabError
from affectlab.models.affect_model import create_model
from affectlab.training import features
from affectlab.training.features import FeatureCache

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
    reference = open_dataset(DataConfig(path=str(raw)), SIZE)  # the in-RAM path on the same folder
    assert manifest["split"] == reference.assignment  # the same split, drawn once with the same seed and ratios
    assert manifest["format_version"] == 1 and manifest["settings"]["input_size"] == SIZE
    assert manifest["skipped"] == [f"{corrupt}: not a readable image (corrupt or unsupported format)"]
    labels = {s.id: s for s in read_dataset(raw).samples}
    streamed = open_dataset(DataConfig(path=str(out)), SIZE)
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
        stream = FaceStream(str(folder), FaceToTensor(Preprocess(input_size=SIZE)), seed=0, with_index=True)
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
    reference = open_dataset(DataConfig(path=str(raw)), SIZE)
    assert record["data"]["counts"] == {name: len(part) for name, part in reference.splits.items()}
    assert json.loads((run / "split.json").read_text()) == reference.assignment
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


@pytest.mark.parametrize("setting", [{"split_seed": 1}, {"val_fraction": 0.2}, {"test_fraction": 0.1}])
def test_a_converted_dataset_refuses_another_split_seed_or_fractions(
    converted: tuple[Path, str], setting: dict[str, float]
) -> None:
    """The split is fixed at conversion: a run asking for another one must not silently train on the stored one."""
    out, _ = converted
    (key, value), *_ = setting.items()
    with pytest.raises(
        AffectlabError, match=rf"data\.{key}={value} differs from the data\.{key}=.* converted with"
    ) as caught:
        open_converted(DataConfig(path=str(out), **setting), SIZE)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert len(open_converted(DataConfig(path=str(out)), SIZE).splits["train"]) > 0  # its own settings still open


@pytest.mark.slow
def test_a_multi_seed_study_on_converted_data_refuses_before_training(
    converted: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``study --seeds 0,1`` draws one split per seed; a converted dataset has one, so the study stops up front
    instead of reporting mean +- std over "split seeds" that were all the same split."""
    out, _ = converted
    args = ["study", "--data", str(out), "--backbones", "resnet18", "--tasks", "classification", "--weights", "none"]
    args += ["--no-freeze", "--input-size", str(SIZE), "--epochs", "1", "--quiet", "--accelerator", "cpu"]
    code = main([*args, "--seeds", "0,1", "--out", str(tmp_path / "study")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "study.seeds" in err[0] and "split seed 0" in err[0], err
    assert not (tmp_path / "study").exists()  # refused before any model trained


def test_convert_resolves_its_settings_like_train(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data convert`` takes its input size and split settings through the config resolver (recipe, flags,
    --set), so a run with the same settings opens the conversion, and a bad value gets the resolver's message."""
    out = tmp_path / "seed3"
    args = ["data", "convert", str(raw), "--out", str(out), "--workers", "1", "--seed", "3"]
    assert main([*args, "--set", "model.input_size=32", "--set", "data.val_fraction=0.2"]) == 0
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert (settings["input_size"], settings["split_seed"], settings["val_fraction"]) == (32, 3, 0.2)
    opened = open_dataset(DataConfig(path=str(out), split_seed=3, val_fraction=0.2), 32)
    assert opened.assignment == open_dataset(DataConfig(path=str(raw), split_seed=3, val_fraction=0.2), 32).assignment
    with pytest.raises(AffectlabError, match="data.split_seed=0 differs from the data.split_seed=3"):
        open_dataset(DataConfig(path=str(out), val_fraction=0.2), 32)
    capsys.readouterr()
    assert main(["data", "convert", str(raw), "--out", str(tmp_path / "tiny"), "--input-size", "16"]) == 2
    assert capsys.readouterr().err.strip() == (
        "affectlab: error: command line: model.input_size=16 is too small (minimum 32)"
    )
    assert not (tmp_path / "tiny").exists()


def test_feature_cache_reads_a_streamed_split_in_chunks(
    converted: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen trunk's features of a converted split come a chunk of faces at a time (never the split decoded
    whole), and equal those of one pass over the decoded faces."""
    out, _ = converted
    train = open_dataset(DataConfig(path=str(out)), SIZE).splits["train"]
    model = create_model(ModelConfig(backbone="resnet18", weights="none", input_size=SIZE))
    preprocess = Preprocess(input_size=SIZE)
    asked: list[int] = []

    class CountingFaces:  # the split's faces, recording how many each read decodes
        shape = train.images.shape

        def __len__(self) -> int:
            return len(train.images)

        def __getitem__(self, key: object) -> np.ndarray:
            faces = train.images[key]
            asked.append(len(faces))
            return faces

    monkeypatch.setattr(features, "CHUNK", 64)
    cached = FeatureCache(tmp_path).get_or_compute("k", train.hashes, model, CountingFaces(), preprocess)
    assert asked == [64, len(train) - 64], asked
    whole = features.extract_features(model, train.images[:], preprocess)
    torch.testing.assert_close(cached, whole, rtol=0, atol=0)
