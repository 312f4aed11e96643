"""The bad-input matrix: careless and hostile input across data, CLI, Python API and HTTP.

Each case asserts the exit code (or HTTP status), the one line that explains it, and that nothing outside the
command's output changed. The ``--overwrite`` cases run inside a temporary folder full of sentinel files; the
home folder is a temporary folder too, and ``/`` is only ever passed to the guard itself, never to a command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from support.bad_input import (
    Payload,
    encoded,
    fuzz,
    mutated,
    npy_header_claiming,
    onnx_with_metadata,
    png_declaring,
    snapshot,
)
from support.data import write_affectnet
from support.models import demo_faces, make_run, one_torch_thread, scene, serving, write_video

import affectlab.experiment  # noqa: F401 - matplotlib caches fonts in $HOME on first import: before any sandbox
from affectlab.atomic import RUN_MARKER, check_replaceable, write_run_marker
from affectlab.cli import main
from affectlab.errors import AffectlabError

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

TINY = ["--backbone", "mobilenet_v2", "--weights", "none", "--input-size", "32", "--epochs", "1", "--quiet"]


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str]]:
    """Run the ``affectlab`` command in this process; returns the exit code and the lines on stderr."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def refused(capsys: pytest.CaptureFixture, root: Path, *args: object, message: str) -> None:
    """The command exits with 2 and one line holding ``message``, and changes nothing under ``root``."""
    before = snapshot(root)
    code, err = run_cli(capsys, *args)
    assert code == 2
    one_line(err, message)
    assert snapshot(root) == before


def one_line(lines: list[str], *fragments: str) -> None:
    assert len(lines) == 1, lines
    assert lines[0].startswith("affectlab: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def old_run(folder: Path) -> Path:
    """An earlier affectlab run, with results a user would hate to lose."""
    folder.mkdir(parents=True)
    write_run_marker(folder, "train")
    (folder / "model.pt").write_bytes(b"weights of three days of training")
    (folder / "notes.txt").write_text("my notes")
    return folder


@pytest.fixture()
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with sentinel files; HOME points into it, so no case can reach the real home folder."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "sentinel.txt").write_text("home")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "sentinel.txt").write_text("cwd")
    (tmp_path / "sentinel.txt").write_text("parent")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


# --- --overwrite deletes only runs ------------------------------------------------------------------------------


def test_overwrite_with_a_typo_in_data_leaves_the_old_run(sandbox: Path, capsys: pytest.CaptureFixture) -> None:
    old_run(sandbox / "work" / "oldrun")  # must stay byte for byte, with no temporary folder left beside it
    args = ["train", "--data", "/typo", "--out", "oldrun", "--overwrite", *TINY]
    refused(capsys, sandbox, *args, message="/typo: no such file or folder")


def test_overwrite_of_the_current_folder_is_refused(sandbox: Path, capsys: pytest.CaptureFixture) -> None:
    write_run_marker(sandbox / "work", "train")  # even a folder that is a run: never the one we stand in
    (sandbox / "no-dataset").mkdir()  # exists, so the refusal is the folder's; and nothing could train on it
    args = ["train", "--data", str(sandbox / "no-dataset"), "--out", ".", "--overwrite", *TINY]
    message = ".: refusing to replace it with --overwrite: it is the current folder or contains it"
    refused(capsys, sandbox, *args, message=message)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("..", "is the current folder or contains it"),
        ("{home}", "is the home folder or contains it"),
        ("{tmp}/user-files", f"is not an affectlab run (no {RUN_MARKER})"),
        ("{tmp}/link-to-run", "is a symbolic link"),
    ],
)
def test_overwrite_refuses_what_affectlab_did_not_create(
    sandbox: Path, capsys: pytest.CaptureFixture, target: str, why: str
) -> None:
    (sandbox / "user-files").mkdir()
    (sandbox / "user-files" / "thesis.tex").write_text("years of work")
    (sandbox / "link-to-run").symlink_to(old_run(sandbox / "run"))
    out = target.format(home=sandbox / "home", tmp=sandbox)
    args = ["train", "--data", "demo", "--out", out, "--overwrite", *TINY]
    refused(capsys, sandbox, *args, message=f"{out}: refusing to replace it with --overwrite: it {why}")


def test_the_guard_refuses_the_root_folder() -> None:
    with pytest.raises(AffectlabError, match="/: refusing to replace it with --overwrite: it is the root folder"):
        check_replaceable(Path("/"))


def test_without_overwrite_an_existing_folder_is_refused(sandbox: Path, capsys: pytest.CaptureFixture) -> None:
    old_run(sandbox / "work" / "oldrun")
    message = "oldrun: folder exists and is not empty; pass --overwrite to replace it"
    refused(capsys, sandbox, "train", "--data", "demo", "--out", "oldrun", *TINY, message=message)


@pytest.mark.slow
def test_overwrite_failing_after_data_loading_keeps_the_old_run(
    sandbox: Path, demo_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """Missing ImageNet weights are found only after the data is read: the old run must still be there."""
    old_run(sandbox / "work" / "oldrun")
    args = ["train", "--data", demo_data, "--out", "oldrun", "--overwrite", *TINY[2:], "--backbone", "vgg16"]
    refused(capsys, sandbox, *args, "--weights", "imagenet", message="ImageNet weights for vgg16 are not available")


@pytest.mark.slow
def test_overwrite_replaces_a_run_only_when_the_new_one_is_finished(
    sandbox: Path, demo_data: Path, capsys: pytest.CaptureFixture
) -> None:
    old_run(sandbox / "work" / "oldrun")
    outside = snapshot(sandbox, skip=(sandbox / "work" / "oldrun",))
    code, _ = run_cli(capsys, "train", "--data", demo_data, "--out", "oldrun", "--overwrite", *TINY)
    assert code == 0
    run = sandbox / "work" / "oldrun"
    assert not (run / "notes.txt").exists() and (run / "model.pt").stat().st_size > 1000
    marker = json.loads((run / RUN_MARKER).read_text())
    assert marker["kind"] == "train" and marker["command"].startswith("affectlab train --data")
    assert marker["command"].endswith(
        "--overwrite --backbone mobilenet_v2 --weights none --input-size 32 --epochs 1 --quiet"
    )
    assert json.loads((run / "run.json").read_text())["name"] == "oldrun"
    assert snapshot(sandbox, skip=(run,)) == outside  # no temporary or aside folder left next to it


# --- data ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def hostile_data(tmp_path: Path) -> Path:
    """An AffectNet folder with 8 good samples and one of each kind of broken file."""
    root = write_affectnet(tmp_path / "data", [(str(i), i % 8, 0.1, -0.1) for i in range(8)])
    (root / "images" / "8.png").write_bytes(png_declaring(10_000, 10_000))  # 97 KB that would decode to 300 MB
    (root / "images" / "9.png").write_bytes(png_declaring(40_000, 40_000))  # over OpenCV's own cap too
    (root / "images" / "10.jpg").write_bytes(encoded(".jpg")[:200])  # truncated
    (root / "images" / "11.jpg").write_bytes(encoded(".jpg"))
    (root / "images" / "12.jpg").write_bytes(encoded(".jpg"))
    for i in (8, 9, 10):
        for key in ("exp", "val", "aro"):
            np.save(root / "annotations" / f"{i}_{key}.npy", np.array("1"))
    for key in ("val", "aro"):
        np.save(root / "annotations" / f"11_{key}.npy", np.array("0.1"))
        np.save(root / "annotations" / f"12_{key}.npy", np.array("0.1"))
    (root / "annotations" / "11_exp.npy").write_bytes(npy_header_claiming(10**11))  # MemoryError before
    (root / "annotations" / "12_exp.npy").write_bytes(b"garbage, not numpy")
    return root


def test_data_check_reports_each_broken_file_in_one_line(hostile_data: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(hostile_data)
    code = main(["data", "check", str(hostile_data)])
    out = capsys.readouterr().out
    assert code == 1
    assert "11 usable samples" in out and "problems: 5 error(s)" in out
    expected = [
        "8.png: image is 10000x10000 pixels, over the limit of 50,000,000",
        "9.png: image has 1,600,000,000 pixels, over the limit",
        "10.jpg: not a readable image",
        "11.jpg: unreadable annotation: expected a single value, found shape (100000000000,)",
        "12.jpg: unreadable annotation: not a .npy file",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in out.splitlines()) == 1, fragment
    assert snapshot(hostile_data) == before


def test_the_pixel_limit_is_configurable(hostile_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from affectlab.data.images import read_rgb

    monkeypatch.setenv("AFFECTLAB_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(AffectlabError, match=r"0\.jpg: image is 32x32 pixels, over the limit of 1,000"):
        read_rgb(hostile_data / "images" / "0.jpg")
    monkeypatch.setenv("AFFECTLAB_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(AffectlabError, match="AFFECTLAB_MAX_IMAGE_PIXELS='lots': expected a positive whole number"):
        read_rgb(hostile_data / "images" / "0.jpg")


def _csv_dataset(root: Path, n: int, missing: int) -> Path:
    root.mkdir()
    lines = ["subDirectory_filePath,expression,valence,arousal"]
    for i in range(n):
        if i >= missing:
            (root / f"{i}.png").write_bytes(encoded(".png", 32, seed=i))
        lines.append(f"{i}.png,{i % 8},0.1,0.2")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def test_mostly_missing_images_stop_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels = _csv_dataset(tmp_path / "data", 40, missing=30)
    code, err = run_cli(capsys, "train", "--data", labels, "--out", tmp_path / "run", *TINY)
    assert code == 2
    one_line(err, "30 of 40 samples are unreadable, more than data.max_bad_fraction=0.5 allows", "0.png not found")
    assert not (tmp_path / "run").exists()


def test_an_empty_split_stops_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_affectnet(tmp_path / "data", [(str(i), i % 8, 0.1, -0.1) for i in range(16)])
    for image in (root / "images").glob("*.jpg"):
        image.write_bytes(b"gone bad")
    args = ["train", "--data", root, "--out", tmp_path / "run", *TINY]
    code, err = run_cli(capsys, *args, "--set", "data.max_bad_fraction=1.0")
    assert code == 2
    one_line(err, "the train split is empty", "unreadable); a run needs samples in every split")
    code, err = run_cli(capsys, *args)
    assert code == 2
    one_line(err, "16 of 16 samples are unreadable")
    code, err = run_cli(capsys, *args, "--set", "data.max_bad_fraction=2")
    one_line(err, "data.max_bad_fraction=2 must be between 0 and 1")
    assert not (tmp_path / "run").exists()


# --- models, checkpoints, ONNX, configs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(work: Path) -> Path:
    path = work / "photo.png"
    cv2.imwrite(str(path), scene(demo_faces(work)[:1], [(40, 40)], size=(240, 320)))
    return path


def _bad_model(kind: str, folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "tensor":
        torch.save(torch.zeros(3), folder / "model.pt")
        return folder / "model.pt", "not an affectlab checkpoint (format 'Tensor')"
    if kind == "unknown_key":
        run = make_run(folder)
        bundle = torch.load(run / "model.pt", weights_only=True)
        bundle["model"]["colour"] = "blue"
        torch.save(bundle, run / "model.pt")
        return run / "model.pt", "damaged affectlab checkpoint (TypeError"
    if kind == "pickle_code":
        torch.save({"format": Payload(folder / "pwned")}, folder / "model.pt")
        return folder / "model.pt", "not an affectlab checkpoint (UnpicklingError)"
    if kind == "truncated":
        run = make_run(folder)
        data = (run / "model.pt").read_bytes()
        (run / "model.pt").write_bytes(data[: len(data) // 2])
        return run / "model.pt", "not an affectlab checkpoint"
    if kind == "onnx_bad_json":
        return onnx_with_metadata(folder / "m.onnx", "{not json"), "malformed affectlab metadata in the ONNX file"
    if kind == "onnx_missing_keys":
        return onnx_with_metadata(folder / "m.onnx", '{"task": "classification"}'), "malformed affectlab metadata"
    if kind == "onnx_garbage":
        (folder / "m.onnx").write_bytes(b"\x08\x07garbage" * 100)
        return folder / "m.onnx", "not a loadable ONNX model"
    raise ValueError(kind)


MODEL_CASES = [
    "tensor",
    "unknown_key",
    "pickle_code",
    "truncated",
    "onnx_bad_json",
    "onnx_missing_keys",
    "onnx_garbage",
]


@pytest.mark.parametrize("kind", MODEL_CASES)
def test_malformed_models_are_one_line_for_predict(
    kind: str, tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture
) -> None:
    model, message = _bad_model(kind, tmp_path / "m")
    args = ["predict", model, photo, "--out", tmp_path / "out.jsonl", "--quiet"]
    refused(capsys, tmp_path, *args, message=f"{model}: {message}")
    assert not (tmp_path / "m" / "pwned").exists()


@pytest.mark.parametrize("kind", ["tensor", "onnx_bad_json"])
def test_malformed_models_raise_one_error_in_python(kind: str, tmp_path: Path) -> None:
    import affectlab

    model, message = _bad_model(kind, tmp_path)
    with pytest.raises(AffectlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        affectlab.load(model)


def test_unsafe_yaml_in_a_run_or_recipe_is_one_line(
    tmp_path: Path, demo_data: Path, capsys: pytest.CaptureFixture
) -> None:
    run = make_run(tmp_path)
    unsafe = "!!python/object/apply:os.mkdir ['" + str(tmp_path / "pwned") + "']\n"
    (run / "config.yaml").write_text(unsafe)
    (run / "split.json").write_text("{}")
    code, err = run_cli(capsys, "evaluate", run)
    assert code == 2
    one_line(err, f"{run / 'config.yaml'}: not valid YAML")
    (tmp_path / "recipe.yaml").write_text(unsafe)
    code, err = run_cli(
        capsys, "train", "--recipe", tmp_path / "recipe.yaml", "--data", demo_data, "--out", tmp_path / "x"
    )
    assert code == 2
    one_line(err, "recipe.yaml: not valid YAML")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x").exists()


def test_planted_imagenet_weights_are_refused(tmp_path: Path, demo_data: Path, capsys: pytest.CaptureFixture) -> None:
    """A .pth placed under torchvision's cache name that is not the published file: never unpickled, never used."""
    cache = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    planted = cache / "mobilenet_v2-b0353104.pth"
    torch.save({"features.0.0.weight": Payload(tmp_path / "pwned")}, planted)
    try:
        code, err = run_cli(
            capsys,
            "train",
            "--data",
            demo_data,
            "--out",
            tmp_path / "run",
            *TINY[:2],
            "--weights",
            "imagenet",
            *TINY[4:],
        )
    finally:
        planted.unlink()
    assert code == 2
    one_line(err, f"{planted}: SHA-256 starts with", "not b0353104 as its name promises")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_weights_whose_name_matches_their_hash_are_still_loaded_without_pickle(tmp_path: Path) -> None:
    import hashlib

    from affectlab.models.weights import load_verified_weights

    payload = tmp_path / "payload.pth"
    torch.save({"w": Payload(tmp_path / "pwned")}, payload)
    prefix = hashlib.sha256(payload.read_bytes()).hexdigest()[:8]
    named = payload.rename(tmp_path / f"mobilenet_v2-{prefix}.pth")
    with pytest.raises(AffectlabError, match=r"not a PyTorch state dict \(UnpicklingError\)"):
        load_verified_weights(named, prefix)
    assert not (tmp_path / "pwned").exists()


REAL_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mobilenet_v2-b0353104.pth"


@pytest.mark.skipif(not REAL_WEIGHTS.is_file(), reason="the real ImageNet file is only on the project machines")
def test_the_real_imagenet_file_passes_the_check() -> None:
    from affectlab.models.weights import load_verified_weights

    state = load_verified_weights(REAL_WEIGHTS, "b0353104")
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)


# --- predict outputs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(work: Path) -> Path:
    return make_run(work)


def test_predict_refuses_to_replace_results_without_overwrite(
    tmp_path: Path, model: Path, photo: Path, capsys: pytest.CaptureFixture
) -> None:
    out, annotated = tmp_path / "old.jsonl", tmp_path / "annotated"
    out.write_text("yesterday's results\n")
    annotated.mkdir()
    (annotated / "photo.png").write_bytes(b"yesterday's picture")
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, "predict", model, photo, "--out", out, "--quiet")
    assert code == 2
    one_line(err, f"{out}: exists; pass --overwrite to replace it")
    code, err = run_cli(capsys, "predict", model, photo, "--save-annotated", annotated, "--quiet")
    assert code == 2
    one_line(err, f"{annotated / 'photo.png'}: exists; pass --overwrite to replace annotated files")
    assert snapshot(tmp_path) == before
    code, _ = run_cli(
        capsys, "predict", model, photo, "--out", out, "--save-annotated", annotated, "--overwrite", "--quiet"
    )
    assert code == 0
    assert json.loads(out.read_text().splitlines()[0])["source"] == str(photo)
    assert (annotated / "photo.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("{tmp}", "is a folder; --out takes a file name ending in .jsonl or .csv"),
        ("{tmp}/a-file.txt/results.jsonl", "cannot be written"),
        ("{tmp}/results.txt", "unknown output format '.txt'; use .jsonl or .csv"),
    ],
)
def test_predict_checks_out_before_the_run(
    tmp_path: Path, model: Path, photo: Path, capsys: pytest.CaptureFixture, out: str, message: str
) -> None:
    (tmp_path / "a-file.txt").write_text("a file, not a folder")
    target = out.format(tmp=tmp_path)
    refused(capsys, tmp_path, "predict", model, photo, "--out", target, "--quiet", message=f"{target}: {message}")


def test_predict_over_a_folder_records_each_bad_image_and_goes_on(
    tmp_path: Path, model: Path, photo: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a-good.png").write_bytes(photo.read_bytes())
    (folder / "b-huge.png").write_bytes(png_declaring(10_000, 10_000))
    (folder / "c-giant.png").write_bytes(png_declaring(40_000, 40_000))
    (folder / "d-broken.jpg").write_bytes(encoded(".jpg")[:100])
    (folder / "e-empty.jpg").write_bytes(b"")
    code, err = run_cli(capsys, "predict", model, folder, "--out", tmp_path / "r.jsonl", "--quiet")
    assert code == 1 and err == []
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    by_file = {Path(r["source"]).name: r for r in records}
    assert set(by_file) == {"a-good.png", "b-huge.png", "c-giant.png", "d-broken.jpg", "e-empty.jpg"}
    assert by_file["a-good.png"].get("error") is None
    assert "image is 10000x10000 pixels, over the limit" in by_file["b-huge.png"]["error"]
    assert "image has 1,600,000,000 pixels, over the limit" in by_file["c-giant.png"]["error"]
    assert "not a readable image" in by_file["d-broken.jpg"]["error"]
    assert "empty file" in by_file["e-empty.jpg"]["error"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any folder")
def test_an_unreadable_folder_is_an_error_record(tmp_path: Path, model: Path, photo: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    (folder / "a.png").write_bytes(photo.read_bytes())
    (folder / "locked").chmod(0)
    try:
        code, _ = run_cli(capsys, "predict", model, folder, "--out", tmp_path / "r.jsonl", "--quiet")
    finally:
        (folder / "locked").chmod(0o755)
    assert code == 1
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert any("locked: cannot read folder (Permission denied)" in (r.get("error") or "") for r in records)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # from this test's own Image.open
def test_python_api_bounds_every_kind_of_input(tmp_path: Path, model: Path) -> None:
    from PIL import Image

    import affectlab

    predictor = affectlab.load(model, detector="none")
    (tmp_path / "huge.png").write_bytes(png_declaring(10_000, 10_000))
    result = predictor.predict(tmp_path / "huge.png")
    assert "huge.png: image is 10000x10000 pixels, over the limit" in result.error
    with Image.open(tmp_path / "huge.png") as lazy, pytest.raises(AffectlabError, match="10000x10000 pixels"):
        predictor.predict(lazy)  # refused before PIL decodes it


def test_sigterm_during_predict_keeps_old_results_and_leaves_no_temporary_file(tmp_path: Path, model: Path) -> None:
    frames = [np.full((120, 160, 3), i % 255, np.uint8) for i in range(400)]
    video = write_video(tmp_path / "long.avi", frames)
    out = tmp_path / "results" / "r.jsonl"
    out.parent.mkdir()
    out.write_text("yesterday's results\n")
    command = [
        sys.executable,
        "-m",
        "affectlab.cli",
        "predict",
        str(model),
        str(video),
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a safety net: the loop ends when the temporary file appears
    while not any(p.suffix == ".tmp" for p in out.parent.iterdir()) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "affectlab: interrupted"
    assert [p.name for p in out.parent.iterdir()] == ["r.jsonl"]
    assert out.read_text() == "yesterday's results\n"


# --- HTTP ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(work: Path, model: Path) -> Iterator[str]:
    """``affectlab serve`` with a 1 MB upload limit, started as a user would."""
    with serving([str(model), "--threads", "1", "--max-upload-mb", "1"], work / "server.log") as url:
        yield url


def _raw(url: str, head: bytes, chunks: Iterable[bytes] = ()) -> bytes:
    """Send a hand-made request; stop sending as soon as the server answers or closes. Returns what came back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=300) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:  # the server closed the connection after answering: the rest was never read
            pass
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        return reply


def _length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].lower().splitlines():
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_upload_over_the_limit_is_refused_before_its_body_is_read(server: str) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 209715200\r\n\r\n"
    )
    reply = _raw(server, head)  # 200 MB announced, none sent: any answer at all did not wait for the body
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"upload larger than 1 MB" in reply


def test_a_chunked_upload_is_cut_off_at_the_limit(server: str) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(400))  # 26 MB offered
    reply = _raw(server, head, chunks)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize(
    ("files", "status", "detail"),
    [
        (
            {"file": ("huge.png", png_declaring(10_000, 10_000), "image/png")},
            400,
            "huge.png: image is 10000x10000 pixels, over the limit",
        ),
        (
            {"file": ("giant.png", png_declaring(40_000, 40_000), "image/png")},
            400,
            "giant.png: image has 1,600,000,000 pixels",
        ),
        ({"file": ("cut.jpg", encoded(".jpg")[:150], "image/jpeg")}, 400, "cut.jpg: not a readable image"),
        ({"file": ("empty.png", b"", "image/png")}, 400, "empty.png: empty file, not an image"),
        ({"other": ("a.png", encoded(".png"), "image/png")}, 400, "no file in a form field named 'file'"),
        ({"file": ("/etc/passwd/../../x.png", b"nope", "image/png")}, 400, "x.png: not a readable image"),
    ],
)
def test_malformed_uploads_get_a_4xx(server: str, files: dict, status: int, detail: str) -> None:  # type: ignore[type-arg]
    response = httpx.post(f"{server}/predict", files=files, timeout=300)
    assert response.status_code == status, response.text
    assert response.json()["detail"] == detail or response.json()["detail"].startswith(detail)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/json"}, b'{"file": "x"}', 415),
        ({"Content-Type": "multipart/form-data; boundary=zz"}, b"--zz\r\nbroken", 400),
        ({"Content-Type": "multipart/form-data"}, b"no boundary at all", 400),
    ],
)
def test_malformed_requests_get_a_4xx(server: str, headers: dict, body: bytes, status: int) -> None:  # type: ignore[type-arg]
    response = httpx.post(f"{server}/predict", headers=headers, content=body, timeout=300)
    assert response.status_code == status, response.text


def test_no_absolute_paths_and_no_api_pages(server: str, model: Path) -> None:
    health = httpx.get(f"{server}/health").text
    assert str(model.parent) not in health and '"/' not in health
    assert json.loads(health)["model"]["source"] == model.name
    for page in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{server}{page}").status_code == 404


@fuzz(60)
@given(data=st.data())
def test_fuzzed_uploads_never_get_a_5xx(server: str, data: st.DataObject) -> None:
    """Random byte damage to a JPEG or a PNG: a prediction or a 400 with one line, never a 500."""
    suffix = data.draw(st.sampled_from([".jpg", ".png"]))
    body = data.draw(mutated(encoded(suffix, 64)))
    response = httpx.post(f"{server}/predict", files={"file": (f"f{suffix}", body, "image/" + suffix[1:])}, timeout=300)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["detail"].startswith(f"f{suffix}: ") and "\n" not in response.json()["detail"]
