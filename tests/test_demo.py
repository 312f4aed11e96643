"""Tests for the synthetic demo dataset: format fidelity to AffectNet, determinism, safety and learnability."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from affectlab.data import demo
from affectlab.data.demo import DEMO_VA_MEANS, DEMO_VERSION, demo_dataset_path, generate_demo_dataset
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS

N_PER_CLASS = 32
SIZE = 48


def _load_str(path: Path) -> str:
    arr = np.load(path, allow_pickle=False)
    assert arr.shape == (), f"{path.name}: expected a 0-d array, got shape {arr.shape}"
    assert arr.dtype.kind == "U", f"{path.name}: expected a unicode string array, got {arr.dtype}"
    return str(arr.item())


def _read(root: Path) -> dict[str, np.ndarray]:
    ids = sorted(int(p.stem) for p in (root / "images").iterdir())
    ann = root / "annotations"
    return {
        "ids": np.array(ids),
        "exp": np.array([int(_load_str(ann / f"{i}_exp.npy")) for i in ids]),
        "val": np.array([float(_load_str(ann / f"{i}_val.npy")) for i in ids]),
        "aro": np.array([float(_load_str(ann / f"{i}_aro.npy")) for i in ids]),
        "lnd": np.stack([np.load(ann / f"{i}_lnd.npy", allow_pickle=False) for i in ids]),
    }


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", n_per_class=N_PER_CLASS, image_size=SIZE)


@pytest.fixture(scope="module")
def labels(dataset: Path) -> dict[str, np.ndarray]:
    return _read(dataset)


@pytest.fixture
def small_defaults(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    """Shrink the cached dataset's parameters so cache tests take milliseconds, not seconds."""
    monkeypatch.setattr(demo, "_DEFAULT_N_PER_CLASS", 2)
    monkeypatch.setattr(demo, "_DEFAULT_IMAGE_SIZE", 32)
    return 2, 32, 0


# ------------------------------------------------------------------------------------------------ format


def test_layout_and_file_counts(dataset: Path) -> None:
    n = N_PER_CLASS * len(EMOTIONS)
    assert sorted(p.name for p in dataset.iterdir()) == ["README.txt", "annotations", "images"]
    assert sorted(p.name for p in (dataset / "images").iterdir()) == sorted(f"{i}.png" for i in range(n))
    expected = {f"{i}_{k}.npy" for i in range(n) for k in ("exp", "val", "aro", "lnd")}
    assert {p.name for p in (dataset / "annotations").iterdir()} == expected
    # The temporary folder was renamed into place, not left next to it.
    assert [p.name for p in dataset.parent.iterdir()] == ["ds"]


def test_readme_describes_the_dataset(dataset: Path) -> None:
    text = (dataset / "README.txt").read_text(encoding="utf-8")
    assert "synthetic" in text.lower()
    assert f"version {DEMO_VERSION}" in text
    assert "seed: 0" in text
    assert f"n_per_class: {N_PER_CLASS}" in text
    assert f"{SIZE}x{SIZE}" in text


def test_annotations_are_affectnet_style_strings(dataset: Path, labels: dict[str, np.ndarray]) -> None:
    raw = np.load(dataset / "annotations" / "0_val.npy", allow_pickle=False)
    assert raw.shape == () and raw.dtype.kind == "U"
    assert len(str(raw).split(".")[1]) == 6  # written as f"{v:.6f}", like the AffectNet release
    assert set(labels["exp"]) <= set(range(len(EMOTIONS)))
    assert np.all(np.abs(labels["val"]) <= 1.0) and np.all(np.abs(labels["aro"]) <= 1.0)


def test_landmarks_follow_ibug_layout(labels: dict[str, np.ndarray]) -> None:
    lnd = labels["lnd"]
    assert lnd.dtype == np.float64 and lnd.shape == (N_PER_CLASS * len(EMOTIONS), 136)
    assert np.isfinite(lnd).all()
    pts = lnd.reshape(len(lnd), 68, 2)
    assert pts.min() > -0.25 * SIZE and pts.max() < 1.25 * SIZE
    # Point 0/36/48 stay on the image-left even for flipped images (the index order is mirrored too).
    assert (pts[:, 0, 0] < pts[:, 16, 0]).all()
    assert (pts[:, 36, 0] < pts[:, 45, 0]).all()
    assert (pts[:, 39, 0] < pts[:, 42, 0]).all()
    assert (pts[:, 48, 0] < pts[:, 54, 0]).all()
    brows, eyes, mouth = pts[:, 17:27, 1].mean(1), pts[:, 36:48, 1].mean(1), pts[:, 48:68, 1].mean(1)
    assert (brows < eyes).all() and (eyes < mouth).all()
    assert (pts[:, 8, 1] > mouth).all()  # chin below the mouth


def test_images_decode_to_requested_size(dataset: Path) -> None:
    for path in sorted((dataset / "images").iterdir())[:20]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None, path
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert image.std() > 10  # a drawn face, not a flat fill


def test_classes_are_balanced_and_shuffled(labels: dict[str, np.ndarray]) -> None:
    assert np.bincount(labels["exp"], minlength=len(EMOTIONS)).tolist() == [N_PER_CLASS] * len(EMOTIONS)
    exp = labels["exp"]  # in id order; ids must not give the class away
    assert not (np.diff(exp) >= 0).all()
    assert len(set(exp[:N_PER_CLASS].tolist())) > 2


# ------------------------------------------------------------------------------------- valence / arousal


def test_valence_arousal_follow_the_class(labels: dict[str, np.ndarray]) -> None:
    exp, val, aro = labels["exp"], labels["val"], labels["aro"]

    def mean(values: np.ndarray, name: str) -> float:
        return float(values[exp == EMOTIONS.index(name)].mean())

    assert mean(val, "Happy") > mean(val, "Sad") + 0.8
    assert mean(val, "Happy") > mean(val, "Neutral") > mean(val, "Disgust")
    assert min(mean(aro, "Surprise"), mean(aro, "Fear")) > mean(aro, "Neutral") > mean(aro, "Sad")
    assert abs(mean(val, "Neutral")) < 0.1 and abs(mean(aro, "Neutral")) < 0.1
    for name, (v, a) in DEMO_VA_MEANS.items():
        assert abs(mean(val, name) - v) < 0.15, name
        assert abs(mean(aro, name) - a) < 0.15, name


def test_valence_arousal_track_the_drawn_intensity(labels: dict[str, np.ndarray]) -> None:
    """Within a class, a stronger drawn expression comes with V/A further from neutral."""
    exp, pts = labels["exp"], labels["lnd"].reshape(-1, 68, 2)
    interocular = np.linalg.norm(pts[:, 45] - pts[:, 36], axis=1)
    # Smile: mouth corners above the lip centre; mouth opening: inner lips apart.
    smile = ((pts[:, 62, 1] + pts[:, 66, 1]) / 2 - (pts[:, 48, 1] + pts[:, 54, 1]) / 2) / interocular
    opening = (pts[:, 66, 1] - pts[:, 62, 1]) / interocular
    happy, surprise = exp == EMOTIONS.index("Happy"), exp == EMOTIONS.index("Surprise")
    assert np.corrcoef(smile[happy], labels["val"][happy])[0, 1] > 0.5
    assert np.corrcoef(opening[surprise], labels["aro"][surprise])[0, 1] > 0.5


# ---------------------------------------------------------------------------------------------- learnable


def _aligned_faces(dataset: Path, labels: dict[str, np.ndarray], out: int = 32) -> np.ndarray:
    """Undo pose with the landmarks and keep only fine detail, so class differences show up in plain means."""
    pts = labels["lnd"].reshape(-1, 68, 2).astype(np.float32)
    anchors = [0, 16, 27, 36, 39, 42, 45]  # jaw ends, nose bridge, eye corners: do not move with expression
    template = pts[:, anchors].mean(0)
    template = (template - template.mean(0)) / np.ptp(template[:, 0]) * out * 0.8 + [out / 2, out * 0.35]
    faces = []
    for i, p in zip(labels["ids"], pts, strict=True):
        gray = cv2.imread(str(dataset / "images" / f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        matrix, _ = cv2.estimateAffinePartial2D(p[anchors], template.astype(np.float32))
        face = cv2.warpAffine(gray, matrix, (out, out)).astype(np.float32)
        faces.append(face - cv2.GaussianBlur(face, (0, 0), 2.0))  # drop skin tone, lighting and background
    return np.stack(faces)


def test_expressions_are_visible_in_the_pixels(dataset: Path, labels: dict[str, np.ndarray]) -> None:
    faces = _aligned_faces(dataset, labels)
    exp = labels["exp"]
    mouth = faces[:, 16:28, 8:24]

    def mean_abs_t(a: np.ndarray, b: np.ndarray) -> float:
        """Per-pixel Welch t of the two groups' means, averaged over the region (about 0.8 when they match)."""
        se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b)) + 1e-6
        return float((np.abs(a.mean(0) - b.mean(0)) / se).mean())

    def group(name: str) -> np.ndarray:
        return mouth[exp == EMOTIONS.index(name)]

    same_class = max(mean_abs_t(group(n)[::2], group(n)[1::2]) for n in EMOTIONS)
    assert same_class < 1.5
    assert mean_abs_t(group("Happy"), group("Sad")) > max(1.6, 1.3 * same_class)
    assert mean_abs_t(group("Surprise"), group("Neutral")) > max(1.6, 1.3 * same_class)

    # Nearest class mean on held-out faces: far above the 1/8 chance level with few examples per class.
    feats = faces[:, 5:30, 5:27].reshape(len(faces), -1)
    feats = (feats - feats.mean(1, keepdims=True)) / (feats.std(1, keepdims=True) + 1e-6)
    train = np.zeros(len(exp), bool)
    for c in range(len(EMOTIONS)):
        train[np.flatnonzero(exp == c)[: N_PER_CLASS // 2]] = True
    centroids = np.stack([feats[train & (exp == c)].mean(0) for c in range(len(EMOTIONS))])
    dist = ((feats[~train, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = float((dist.argmin(1) == exp[~train]).mean())
    assert accuracy > 0.4, accuracy


# -------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = _tree_bytes(generate_demo_dataset(tmp_path / "a", n_per_class=2, image_size=32, seed=7))
    b = _tree_bytes(generate_demo_dataset(tmp_path / "b", n_per_class=2, image_size=32, seed=7))
    c = _tree_bytes(generate_demo_dataset(tmp_path / "c", n_per_class=2, image_size=32, seed=8))
    assert a == b
    assert a.keys() == c.keys()
    assert a["images/0.png"] != c["images/0.png"]
    assert sum(a[k] != c[k] for k in a if k.startswith("images/")) == 16


# ----------------------------------------------------------------------------------------- safety


def test_refuses_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(AffectlabError, match="not empty") as info:
        generate_demo_dataset(target, n_per_class=1, image_size=32)
    assert "\n" not in str(info.value) and str(target) in str(info.value)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folder left behind


def test_refuses_a_file_and_bad_parameters(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(AffectlabError, match="not a folder"):
        generate_demo_dataset(tmp_path / "file", n_per_class=1, image_size=32)
    for kwargs in ({"n_per_class": 0}, {"image_size": 8}, {"seed": -1}, {"n_per_class": 1.5}):
        with pytest.raises(AffectlabError):
            generate_demo_dataset(tmp_path / "new", **{"n_per_class": 1, "image_size": 32, **kwargs})
    assert not (tmp_path / "new").exists()


def test_accepts_an_empty_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = generate_demo_dataset(tmp_path / "empty", n_per_class=1, image_size=32)
    assert len(list((out / "images").iterdir())) == len(EMOTIONS)


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render, calls = demo._render_face, []

    def fail_on_third(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(demo, "_render_face", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(tmp_path / "ds", n_per_class=2, image_size=32)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ cache


def test_default_cache_folder_name() -> None:
    assert demo.demo_folder_name() == f"demo-v{DEMO_VERSION}-n100-s96-seed0"


def test_demo_dataset_path_generates_once(tmp_path: Path, small_defaults: tuple[int, int, int]) -> None:
    first = demo_dataset_path(tmp_path)
    assert first == tmp_path / demo.demo_folder_name(*small_defaults)
    assert len(list((first / "images").iterdir())) == 2 * len(EMOTIONS)
    readme_mtime = (first / "README.txt").stat().st_mtime_ns
    (first / "marker").write_text("still here")

    second = demo_dataset_path(str(tmp_path))
    assert second == first
    assert (second / "marker").read_text() == "still here"  # not regenerated, not replaced
    assert (second / "README.txt").stat().st_mtime_ns == readme_mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_demo_dataset_path_uses_env_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_defaults: tuple[int, int, int]
) -> None:
    monkeypatch.setenv("AFFECTLAB_CACHE", str(tmp_path / "cache"))
    path = demo_dataset_path()
    assert path.parent == tmp_path / "cache" and (path / "README.txt").is_file()


def test_demo_dataset_path_refuses_a_foreign_folder(tmp_path: Path, small_defaults: tuple[int, int, int]) -> None:
    squatter = tmp_path / demo.demo_folder_name(*small_defaults)
    squatter.mkdir()
    (squatter / "other.txt").write_text("x")
    with pytest.raises(AffectlabError, match="not empty"):
        demo_dataset_path(tmp_path)


def test_losing_the_first_use_race_reuses_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_defaults: tuple[int, int, int]
) -> None:
    """Another process finishes first while we generate: use its folder, clean up ours, raise nothing."""
    target = tmp_path / demo.demo_folder_name(*small_defaults)
    real_write = demo._write_dataset

    def write_then_lose(root: Path, *args: int) -> None:
        real_write(root, *args)
        shutil.copytree(root, target)  # the "other process" publishes an identical dataset first
        (target / "winner").write_text("")

    monkeypatch.setattr(demo, "_write_dataset", write_then_lose)
    assert demo_dataset_path(tmp_path) == target
    assert (target / "winner").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]

    # An explicit generate_demo_dataset must not silently accept someone else's folder.
    shutil.rmtree(target)
    with pytest.raises(AffectlabError, match="someone else"):
        generate_demo_dataset(target, n_per_class=1, image_size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
