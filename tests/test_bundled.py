"""The bundled model: the registry of named models, the name wherever a model is taken, tools/build_bundled.py,
and the real packaged file (skipped only while it is absent)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.data import write_affectnet, write_class_folders
from support.models import demo_faces, make_run, one_torch_thread

import affectlab
from affectlab.cli import main
from affectlab.cli.checks import predict_model_and_inputs
from affectlab.errors import AffectlabError
from affectlab.models import registry
from affectlab.models.checkpoint import checkpoint_bytes, load_checkpoint
from affectlab.models.registry import DEFAULT_MODEL, MODELS, NamedModel, cache_dir, resolve_model

_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

ROOT = Path(__file__).resolve().parents[1]
REAL_FILE = registry.BUNDLED_DIR / MODELS[DEFAULT_MODEL].filename


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_bundled", ROOT / "tools" / "build_bundled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def half_file(work: Path) -> tuple[Path, Path]:
    """(a run folder, the same model written as a half-precision file), as the bundled file is written."""
    run = make_run(work, expression_gain=4.0)  # logits of a trained model's size, not the default's 30x
    model, meta = load_checkpoint(run)
    path = work / "named" / "test-model.pt"
    path.parent.mkdir()
    path.write_bytes(checkpoint_bytes(model, meta, half=True))
    return run, path


def _entry(path: Path, name: str = DEFAULT_MODEL, **changes: object) -> NamedModel:
    data = path.read_bytes()
    entry = NamedModel(name, path.name, hashlib.sha256(data).hexdigest(), len(data), "a test model")
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]


@pytest.fixture
def as_default(half_file: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The half-precision test file registered as the default model, in place of the packaged one."""
    _, path = half_file
    monkeypatch.setattr(registry, "BUNDLED_DIR", path.parent)
    monkeypatch.setitem(MODELS, DEFAULT_MODEL, _entry(path))
    return path


def _one_line_error(call: object) -> str:
    with pytest.raises(AffectlabError) as caught:
        call()  # type: ignore[operator]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_wrong_hash_a_wrong_size_and_a_missing_file_are_refused_in_one_line(
    half_file: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, path = half_file
    monkeypatch.setattr(registry, "BUNDLED_DIR", path.parent)
    monkeypatch.setitem(MODELS, "wrong-hash", _entry(path, "wrong-hash", sha256="0" * 64))
    assert "SHA-256" in _one_line_error(lambda: resolve_model("wrong-hash"))
    assert "SHA-256" in _one_line_error(lambda: affectlab.load("wrong-hash"))
    monkeypatch.setitem(MODELS, "wrong-size", _entry(path, "wrong-size", size=123))
    assert "expects 123" in _one_line_error(lambda: resolve_model("wrong-size"))
    monkeypatch.setitem(MODELS, "missing", _entry(path, "missing", filename="absent.pt"))
    assert "model file missing in the package" in _one_line_error(lambda: resolve_model("missing"))
    # the command line says the same in one line, exit 2, before any input is read
    code = main(["predict", "--model", "wrong-hash", str(tmp_path / "nothing.png")])
    assert code == 2
    # the right entry passes
    monkeypatch.setitem(MODELS, "right", _entry(path, "right"))
    assert resolve_model("right") == path


def test_a_registry_without_a_file_yet_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path)
    monkeypatch.setitem(MODELS, DEFAULT_MODEL, NamedModel(DEFAULT_MODEL, "affectlab-base.pt", "", 0, "not built"))
    assert "no file for it yet" in _one_line_error(lambda: resolve_model(None))
    # every verb without a model takes the default, and says so in one line; a predict with nothing to do says that
    for argv in (["predict", "photo.jpg"], ["serve", "--port", "0"], ["export", DEFAULT_MODEL]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "affectlab-base: this affectlab has no file for it yet" in err[0], argv
    assert main(["predict"]) == 2 and "give at least one INPUT" in capsys.readouterr().err


def test_a_url_entry_is_read_from_the_cache(half_file: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A hosted file, already downloaded: found in the user's cache and hash-checked there (no network)."""
    _, path = half_file
    entry = _entry(path, "hosted", filename="hosted-model.pt", url="https://example.invalid/hosted-model.pt")
    monkeypatch.setitem(MODELS, "hosted", entry)
    cached = cache_dir() / "hosted-model.pt"
    assert cached.parent.parent == Path(__import__("os").environ["AFFECTLAB_CACHE"])  # the isolated test cache
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(path.read_bytes())
    assert resolve_model("hosted") == cached
    faces = np.stack(demo_faces(cached.parent.parent, n_per_class=1, size=64))[..., ::-1]
    got = affectlab.load("hosted", detector="none").predict(list(faces))
    want = affectlab.load(path, detector="none").predict(list(faces))
    assert np.array_equal([f.probs for r in got for f in r], [f.probs for r in want for f in r])
    cached.write_bytes(b"x" * entry.size)  # damaged in the cache: named, with the way out
    assert "delete it to download it again" in _one_line_error(lambda: resolve_model("hosted"))


def test_half_precision_weights_are_stored_at_half_the_size_and_loaded_as_float32(
    half_file: tuple[Path, Path],
) -> None:
    """(How close their outputs are is checked on a trained run, in the build test: this test model's BatchNorm
    statistics come from random images, which magnify rounding far beyond a trained network's.)"""
    run, path = half_file
    assert path.stat().st_size < 0.6 * (run / "model.pt").stat().st_size
    model, _ = load_checkpoint(path)
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    reference, _ = load_checkpoint(run)
    for (name, loaded), original in zip(model.state_dict().items(), reference.state_dict().values()):
        assert loaded.dtype == original.dtype, name
        assert loaded.float().sub(original.float()).abs().max() <= original.float().abs().max() * 1e-3 + 1e-6, name


def test_no_model_means_the_default_one(as_default: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert affectlab.load().info.source == str(as_default)
    faces = demo_faces(tmp_path, n_per_class=1, size=64)
    photo = tmp_path / "photo.png"
    import cv2

    cv2.imwrite(str(photo), faces[1])
    assert main(["predict", str(photo), "--detector", "none", "--quiet"]) == 0
    default = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", "--model", str(as_default), str(photo), "--detector", "none", "--quiet"]) == 0
    named = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(default) == 1 and default == named
    summary = affectlab.predict(inputs=photo, detector="none")
    assert summary.results is not None and summary.results[0][0].label == default[0]["label"]
    # a model given as an input is told apart: an image where a model was expected is named as one
    assert "an image or video, not a model" in _one_line_error(lambda: affectlab.load(photo))


def test_names_are_resolved_before_anything_heavy_is_imported() -> None:
    """The command line checks a model name and tells a model from an input before numpy or torch load."""
    code = (
        "import sys; import affectlab.cli.checks, affectlab.models.registry; "
        "print(sorted({'numpy', 'torch', 'cv2'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("paths", "model", "expected"),
    [
        (["photo.jpg"], None, (None, ["photo.jpg"])),
        (["photo.jpg", "clip.mp4"], None, (None, ["photo.jpg", "clip.mp4"])),
        ([DEFAULT_MODEL, "photo.jpg"], None, (DEFAULT_MODEL, ["photo.jpg"])),
        (["model.onnx", "photo.jpg"], None, ("model.onnx", ["photo.jpg"])),
        (["{run}", "photo.jpg"], None, ("{run}", ["photo.jpg"])),
        (["{run}"], None, ("{run}", [])),  # then "give at least one INPUT", as before
        (["missing-run", "photo.jpg"], None, ("missing-run", ["photo.jpg"])),  # then "model not found", as before
        (["{photos}", "photo.jpg"], None, (None, ["{photos}", "photo.jpg"])),  # a folder of images is an input
        (["{run}", "photo.jpg"], "m.onnx", ("m.onnx", ["{run}", "photo.jpg"])),  # --model: every path an input
    ],
)
def test_predict_tells_the_model_from_the_inputs(
    paths: list[str], model: str | None, expected: tuple[str | None, list[str]], run: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    values = {"run": str(run), "photos": str(photos)}
    want_model, want_inputs = expected
    got = predict_model_and_inputs([p.format(**values) for p in paths], model)
    assert got == (
        None if want_model is None else want_model.format(**values),
        [p.format(**values) for p in want_inputs],
    )


@pytest.mark.slow
def test_build_bundled_writes_a_file_that_predicts_as_the_run(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    rows = [(str(i), i % 8, *np.round(rng.uniform(-1, 1, 2), 2)) for i in range(80)]
    affectnet = write_affectnet(tmp_path / "affectnet-tiny", rows, size=32)
    fer = write_class_folders(tmp_path / "fer2013-tiny", {"angry": 10, "happy": 10, "sad": 10, "neutral": 10})
    run = affectlab.train(
        "mobile",
        data=[str(affectnet), str(fer)],
        out=tmp_path / "run",
        progress=False,
        weights="none",
        input_size=32,
        epochs=1,
        batch_size=16,
        robustness=False,
    )
    assert run is not None
    tool = _tool()
    out = tmp_path / "bundled"
    assert tool.main([str(run.path), "--out-dir", str(out), "--no-speed"]) == 0
    printed = capsys.readouterr().out
    file = out / f"{DEFAULT_MODEL}.pt"
    data = file.read_bytes()
    assert f'BASE_SHA256 = "{hashlib.sha256(data).hexdigest()}"' in printed and f"BASE_SIZE = {len(data)}" in printed
    assert len(data) <= tool.MAX_BYTES
    assert tool.main([str(run.path), "--out-dir", str(out), "--no-speed"]) == 2  # never replaced unasked
    # the card: licences, the run's test metrics, limits, the rebuild command
    card = (out / "MODEL_CARD.md").read_text()
    accuracy = json.loads((run.path / "metrics.json").read_text())["classification"]["accuracy"]
    assert "non-commercial research use only" in card and f"| {accuracy:.3f} |" in card
    assert "AffectNet licence agreement" in card and "| fer2013-tiny | FER-2013 | 40 (" in card
    assert "## Known limits" in card and "tools/build_bundled.py runs/bundled" in card
    # what it keeps on faces in scenes, where the run measured it; no robustness line, as robustness was off
    ratio = (json.loads((run.path / "metrics.json").read_text()).get("faces_in_scenes") or {}).get("accuracy_ratio")
    assert ("generated scenes" in card) == (ratio is not None) and "under camera damage" not in card
    assert ratio is None or f"keeps, of its clean accuracy, {ratio:.2f} when" in card
    # the file: not a demo model, its card data recorded, and the run's predictions within 1e-2
    _, meta = load_checkpoint(file)
    assert meta.extra["demo_data"] is False and meta.card["test_metrics"]["classification"]["accuracy"] == accuracy
    faces = list(np.stack(demo_faces(tmp_path, n_per_class=2, size=64))[..., ::-1])
    built = affectlab.load(file, detector="none").predict(faces)
    trained = affectlab.load(run.path, detector="none").predict(faces)
    for name in ("probs", "valence", "arousal"):
        a = np.array([getattr(f, name) for r in built for f in r], dtype=float)
        assert np.abs(a - np.array([getattr(f, name) for r in trained for f in r], dtype=float)).max() < 1e-2
    # --write-registry: the two lines of a registry are rewritten with the hash and size, nothing else
    copy = tmp_path / "registry.py"
    original = (ROOT / "src" / "affectlab" / "models" / "registry.py").read_text()
    copy.write_text(original)
    tool.write_registry(hashlib.sha256(data).hexdigest(), len(data), copy)
    rewritten = copy.read_text()
    assert f'\nBASE_SHA256 = "{hashlib.sha256(data).hexdigest()}"\n' in rewritten
    assert f"\nBASE_SIZE = {len(data)}\n" in rewritten and len(rewritten.splitlines()) == len(original.splitlines())
    # registered, the name is what the page's card shows: the training data and metrics from the file itself
    monkeypatch.setattr(registry, "BUNDLED_DIR", out)
    monkeypatch.setitem(MODELS, DEFAULT_MODEL, _entry(file))
    from affectlab.export.model_card import model_card_markdown

    page_card = model_card_markdown(affectlab.load(DEFAULT_MODEL).info)
    assert "not recorded" not in page_card and "non-commercial" in page_card
    # evaluate by name: on other data only, into the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AffectlabError, match="--split all"):
        affectlab.evaluate(DEFAULT_MODEL)
    metrics = affectlab.evaluate(DEFAULT_MODEL, str(demo_data), split="all")
    assert metrics.path == Path(f"eval-{DEFAULT_MODEL}-faces") / "metrics.json" and metrics.path.is_file()
    assert metrics.n == 96
    # export by name: an ONNX file beside the user (never into the package) that carries the card too
    assert main(["export", DEFAULT_MODEL]) == 0
    onnx = affectlab.load(tmp_path / f"{DEFAULT_MODEL}.onnx", detector="none")
    assert "not recorded" not in model_card_markdown(onnx.info)


@pytest.mark.skipif(not REAL_FILE.is_file(), reason=f"the bundled model is not built yet ({REAL_FILE} is absent)")
def test_the_real_bundled_model(tmp_path: Path) -> None:
    """The packaged file: its registry hash, its size, its metadata and sane, repeatable outputs on faces."""
    entry = MODELS[DEFAULT_MODEL]
    data = REAL_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.size <= 10 * 2**20
    assert resolve_model(None) == REAL_FILE
    _, meta = load_checkpoint(DEFAULT_MODEL)
    assert meta.task == "multitask" and not meta.trained_on_demo and meta.calibration is not None
    assert set(meta.card) == {"training_data", "test_metrics"}
    predictor = affectlab.load(detector="none")
    faces = list(np.stack(demo_faces(tmp_path, n_per_class=1, size=160))[..., ::-1])
    first, again = predictor.predict(faces), predictor.predict(faces)
    probs = np.array([f.probs for r in first for f in r])
    va = np.array([[f.valence, f.arousal] for r in first for f in r], dtype=float)
    assert probs.shape == (8, 8) and np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.isfinite(va).all() and (np.abs(va) <= 1.0 + 1e-6).all()
    assert np.array_equal(probs, [f.probs for r in again for f in r])


@pytest.mark.skipif(not REAL_FILE.is_file(), reason=f"the bundled model is not built yet ({REAL_FILE} is absent)")
def test_the_bundled_model_reads_a_real_smile() -> None:
    """scikit-image's public-domain astronaut photo, as the README shows it: one face, Happy, positive valence."""
    from skimage import data

    faces = affectlab.load().predict(data.astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert face.label == "Happy" and face.confidence > 0.5 and face.valence > 0.3
    assert face.prediction_set is not None and "Happy" in face.prediction_set


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
