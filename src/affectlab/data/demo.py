"""A built-in synthetic face-expression dataset in AffectNet layout.

AffectNet is licensed and large, so it cannot ship with affectlab, yet every part of the pipeline (readers,
training, evaluation, export, serving) needs real-looking data to demo and test against. This module draws
cartoon faces whose mouth, brows and eyes follow the emotion, adds the nuisance variation real photos have
(skin tone, pose, lighting, background, noise, flips) and writes them exactly as the AffectNet release does:

* ``images/<id>.png``
* ``annotations/<id>_exp.npy``, ``<id>_val.npy``, ``<id>_aro.npy``: 0-d unicode-string arrays, as in AffectNet
* ``annotations/<id>_lnd.npy``: float64, shape (136,), 68 (x, y) landmarks in image pixels (iBUG order)
* ``README.txt``: what the folder is and how it was made

Valence/arousal follow per-class means plus a within-class part tied to the drawn expression intensity, so
they are partly predictable from the picture, as in real data. Output is byte-identical for a given seed.
Nothing is generated at import time.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from affectlab.config import cache_root
from affectlab.errors import AffectlabError
from affectlab.labels import EMOTIONS

__all__ = [
    "DEMO_VA_MEANS",
    "DEMO_VERSION",
    "demo_dataset_path",
    "demo_folder_name",
    "generate_demo_dataset",
    "is_demo_dataset",
]

#: Bump whenever the drawing or the annotations change, so cached demo folders from older code are not reused.
DEMO_VERSION = 1

#: Per-class mean (valence, arousal), in ``EMOTIONS`` order; close to the class means of real AffectNet.
DEMO_VA_MEANS: dict[str, tuple[float, float]] = {
    "Neutral": (0.0, 0.0),
    "Happy": (0.67, 0.08),
    "Sad": (-0.63, -0.27),
    "Surprise": (0.18, 0.70),
    "Fear": (-0.12, 0.76),
    "Disgust": (-0.68, 0.45),
    "Anger": (-0.43, 0.55),
    "Contempt": (-0.51, 0.58),
}

_DEFAULT_N_PER_CLASS = 100
_DEFAULT_IMAGE_SIZE = 96
_DEFAULT_SEED = 0
_README = "README.txt"
_README_TITLE = "affectlab synthetic demo dataset"
_VA_NOISE_STD = 0.08
_MIN_INTENSITY, _MAX_INTENSITY = 0.3, 1.0  # expressive classes; Neutral is drawn at intensity 0
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing precision of 1/16 canvas pixel


# ----------------------------------------------------------------------------------------------- public API


def demo_folder_name(
    n_per_class: int = _DEFAULT_N_PER_CLASS, image_size: int = _DEFAULT_IMAGE_SIZE, seed: int = _DEFAULT_SEED
) -> str:
    """Name of the cache folder for a parameter set.

    The name carries the generator version and every parameter, so a cache never hands back a dataset that
    was drawn by older code or with other settings.
    """
    return f"demo-v{DEMO_VERSION}-n{n_per_class}-s{image_size}-seed{seed}"


def generate_demo_dataset(
    out_dir: str | Path, n_per_class: int = _DEFAULT_N_PER_CLASS, image_size: int = _DEFAULT_IMAGE_SIZE, seed: int = 0
) -> Path:
    """Draw ``8 * n_per_class`` synthetic faces and write them to ``out_dir`` in AffectNet layout.

    Everything is written into a hidden temporary sibling of ``out_dir`` that is renamed into place at the
    end, so an interrupted run never leaves a half dataset that a later step would read as complete.

    Args:
        out_dir: Folder to create. It must not exist, or be empty, so a user's data is never overwritten.
        n_per_class: Images per emotion class; the classes are exactly balanced.
        image_size: Width and height of the square images in pixels (at least 32).
        seed: Seed for ``numpy.random.default_rng``; the same seed gives byte-identical files.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        AffectlabError: ``out_dir`` exists and is not an empty folder, or a parameter is out of range.
    """
    return _generate(Path(out_dir).expanduser(), n_per_class, image_size, seed, reuse_existing=False)


def demo_dataset_path(cache_dir: str | Path | None = None) -> Path:
    """Return the cached demo dataset (default parameters), generating it on first use.

    Demos and tests want "some AffectNet-shaped data" without a download or a setup step; generating once and
    caching keeps later calls instant. Two processes racing on the first use are safe: each draws into its own
    temporary folder and the loser of the final rename simply uses the winner's folder.

    Args:
        cache_dir: Cache root. Defaults to ``$AFFECTLAB_CACHE`` if set, else ``~/.cache/affectlab``.

    Returns:
        Path of the dataset folder, e.g. ``~/.cache/affectlab/demo-v1-n100-s96-seed0``.

    Raises:
        AffectlabError: The cache folder exists but is not a complete demo dataset (no ``README.txt``).
    """
    if cache_dir is None:
        cache_dir = cache_root()
    root = Path(cache_dir).expanduser()
    path = root / demo_folder_name(_DEFAULT_N_PER_CLASS, _DEFAULT_IMAGE_SIZE, _DEFAULT_SEED)
    if (path / _README).is_file():
        return path
    return _generate(path, _DEFAULT_N_PER_CLASS, _DEFAULT_IMAGE_SIZE, _DEFAULT_SEED, reuse_existing=True)


# ------------------------------------------------------------------------------------------- folder handling


def _check_params(n_per_class: int, image_size: int, seed: int) -> None:
    for name, value, low in (("n_per_class", n_per_class, 1), ("image_size", image_size, 32), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise AffectlabError(f"demo dataset: {name} must be an integer >= {low}, got {value!r}")


def is_demo_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder of the synthetic faces (``--data demo``'s or one ``affectlab data demo`` wrote):
    a model trained on it knows drawn cartoons, not people, and says so wherever it is used."""
    readme = Path(path) / _README
    try:
        return readme.is_file() and readme.read_text(encoding="utf-8").startswith(_README_TITLE)
    except (OSError, UnicodeDecodeError):
        return False


def _is_complete(path: Path) -> bool:
    return (path / _README).is_file()


def _generate(out_dir: Path, n_per_class: int, image_size: int, seed: int, *, reuse_existing: bool) -> Path:
    _check_params(n_per_class, image_size, seed)
    if reuse_existing and _is_complete(out_dir):
        return out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise AffectlabError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise AffectlabError(f"{out_dir}: folder exists and is not empty; choose a new or empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the finished dataset should read like any folder
        _write_dataset(tmp, int(n_per_class), int(image_size), int(seed))
        if _publish(tmp, out_dir):
            return out_dir
        if reuse_existing and _is_complete(out_dir):
            return out_dir  # another process finished first: its dataset is identical, use it
        raise AffectlabError(f"{out_dir}: folder was filled by someone else while generating; not replacing it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op after a successful rename


def _publish(tmp: Path, out_dir: Path) -> bool:
    """Atomically move ``tmp`` to ``out_dir``; False when ``out_dir`` is now a non-empty folder."""
    try:
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # os.replace cannot replace a directory on Windows, even an empty one
        os.replace(tmp, out_dir)
        return True
    except OSError:
        if out_dir.is_dir() and any(out_dir.iterdir()):
            return False
        raise


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` serialised in memory and written with one call: thousands of tiny files, so it adds up."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.write_bytes(buffer.getvalue())


def _write_dataset(root: Path, n_per_class: int, image_size: int, seed: int) -> None:
    images_dir, ann_dir = root / "images", root / "annotations"
    images_dir.mkdir()
    ann_dir.mkdir()
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(EMOTIONS)), n_per_class))
    # One independent stream per image: an image depends only on (seed, id), not on how others were drawn.
    for sample_id, (label, face_rng) in enumerate(zip(labels, rng.spawn(len(labels)), strict=True)):
        image, landmarks, valence, arousal = _render_face(face_rng, int(label), image_size)
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise AffectlabError(f"{images_dir / f'{sample_id}.png'}: PNG encoding failed")
        (images_dir / f"{sample_id}.png").write_bytes(png.tobytes())
        # Same on-disk form as the AffectNet release: 0-d unicode strings, not numbers.
        _save_npy(ann_dir / f"{sample_id}_exp.npy", np.array(str(int(label))))
        _save_npy(ann_dir / f"{sample_id}_val.npy", np.array(f"{valence:.6f}"))
        _save_npy(ann_dir / f"{sample_id}_aro.npy", np.array(f"{arousal:.6f}"))
        _save_npy(ann_dir / f"{sample_id}_lnd.npy", landmarks.astype(np.float64).reshape(-1))
    counts = ", ".join(f"{name} {n_per_class}" for name in EMOTIONS)
    (root / _README).write_text(
        f"{_README_TITLE} (NOT real faces, NOT AffectNet data)\n"
        "\n"
        "Cartoon faces drawn by affectlab.data.demo so affectlab can be demoed and tested without the licensed\n"
        "AffectNet release. Same layout and file formats as AffectNet:\n"
        "  images/<id>.png\n"
        "  annotations/<id>_exp.npy, <id>_val.npy, <id>_aro.npy  (0-d unicode-string arrays)\n"
        "  annotations/<id>_lnd.npy  (float64, 68 (x, y) landmarks, rough)\n"
        "Valence/arousal are synthetic: per-class means plus a part tied to the drawn intensity plus noise.\n"
        "\n"
        f"generator: affectlab.data.demo version {DEMO_VERSION}\n"
        f"seed: {seed}\n"
        f"n_per_class: {n_per_class}\n"
        f"image_size: {image_size}x{image_size}\n"
        f"images: {n_per_class * len(EMOTIONS)} ({counts})\n",
        encoding="utf-8",
    )


# --------------------------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class _Expr:
    """Face-feature parameters in face units (face half-width = 1, y points down)."""

    mouth_w: float = 0.30  # half width
    mouth_curve: float = 0.0  # corners up (+) or down (-)
    mouth_open: float = 0.0  # gap between the lips at the centre
    mouth_up: float = 0.5  # share of the opening taken by the upper lip moving up
    mouth_round: float = 0.5  # exponent of the opening profile: 0.5 = ellipse, smaller = boxier
    mouth_smirk: float = 0.0  # raises one corner only
    lip_raise: float = 0.0  # one-sided, wavy upper-lip raise (disgust)
    lip_press: float = 0.0  # thicker, pressed lips
    mouth_drop: float = 0.0  # jaw drop moves the mouth down
    brow_raise: float = 0.0
    brow_inner: float = 0.0  # extra raise (+) or lowering (-) of the inner brow ends
    brow_inner_x: float = 0.0  # inner ends drawn toward the centre
    brow_outer: float = 0.0
    brow_asym: float = 0.0  # one brow higher than the other
    eye_open: float = 0.085  # upper-lid height
    eye_lower: float = 0.75  # lower-lid height as a share of the upper one (low = smiling eyes)
    nose_wrinkle: float = 0.0
    frown_lines: float = 0.0
    cheek_folds: float = 0.0


_NEUTRAL = _Expr()
#: Full-intensity targets; a face at intensity i is ``neutral + i * (target - neutral)``.
_TARGETS: dict[str, _Expr] = {
    "Neutral": _NEUTRAL,
    "Happy": _Expr(
        mouth_w=0.40,
        mouth_curve=0.17,
        mouth_open=0.13,
        mouth_up=0.12,
        mouth_round=0.6,
        brow_raise=0.02,
        eye_open=0.065,
        eye_lower=0.15,
        cheek_folds=1.0,
    ),
    "Sad": _Expr(mouth_w=0.27, mouth_curve=-0.14, brow_inner=0.16, brow_outer=-0.05, eye_open=0.06, eye_lower=0.8),
    "Surprise": _Expr(
        mouth_w=0.13,
        mouth_open=0.30,
        mouth_round=0.5,
        mouth_drop=0.06,
        brow_raise=0.17,
        brow_inner=0.02,
        eye_open=0.145,
        eye_lower=0.85,
    ),
    "Fear": _Expr(
        mouth_w=0.38,
        mouth_curve=-0.06,
        mouth_open=0.13,
        mouth_round=0.22,
        mouth_drop=0.03,
        brow_raise=0.10,
        brow_inner=0.09,
        brow_inner_x=0.07,
        brow_outer=-0.03,
        eye_open=0.145,
        eye_lower=0.9,
        frown_lines=0.4,
    ),
    "Disgust": _Expr(
        mouth_w=0.29,
        mouth_curve=-0.07,
        lip_raise=0.13,
        brow_raise=-0.05,
        brow_inner=-0.06,
        brow_inner_x=0.03,
        eye_open=0.04,
        eye_lower=0.5,
        nose_wrinkle=1.0,
    ),
    "Anger": _Expr(
        mouth_w=0.21,
        mouth_curve=-0.03,
        lip_press=1.0,
        brow_raise=-0.04,
        brow_inner=-0.17,
        brow_inner_x=0.05,
        brow_outer=0.04,
        eye_open=0.065,
        eye_lower=0.7,
        frown_lines=1.0,
    ),
    "Contempt": _Expr(mouth_w=0.30, mouth_smirk=0.17, brow_asym=0.05, eye_open=0.07, eye_lower=0.7),
}
_TEETH = {"Happy", "Fear", "Disgust"}
_EXPR_FIELDS = tuple(f.name for f in fields(_Expr))


def _expression(name: str, intensity: float) -> dict[str, float]:
    target = _TARGETS[name]
    return {k: getattr(_NEUTRAL, k) + intensity * (getattr(target, k) - getattr(_NEUTRAL, k)) for k in _EXPR_FIELDS}


def _valence_arousal(
    rng: np.random.Generator, name: str, intensity: float, extra: tuple[float, float]
) -> tuple[float, float]:
    """Class mean scaled by intensity (stronger expression = further from neutral), plus noise."""
    mean_v, mean_a = DEMO_VA_MEANS[name]
    scale = 0.35 + intensity  # intensity ~ U(0.3, 1.0) -> scale ~ U(0.65, 1.35), mean 1
    noise = rng.normal(0.0, _VA_NOISE_STD, 2)
    valence = float(np.clip(mean_v * scale + extra[0] + noise[0], -1.0, 1.0))
    arousal = float(np.clip(mean_a * scale + extra[1] + noise[1], -1.0, 1.0))
    return valence, arousal


# ------------------------------------------------------------------------------------------------- drawing

# iBUG 68-point mirror map: index i of a flipped face is index _FLIP_68[i] of the original.
_FLIP_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)

_HAIR_COLOURS = np.array(  # BGR
    [[20, 20, 25], [25, 35, 60], [35, 60, 100], [60, 110, 170], [110, 170, 215], [150, 150, 155], [30, 45, 130]],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array([[30, 50, 80], [20, 35, 50], [140, 110, 60], [80, 120, 70], [60, 80, 110]], np.float64)


class _Canvas:
    """Draws shapes given in face units onto a supersampled image through a similarity transform."""

    def __init__(self, image: np.ndarray, centre: np.ndarray, scale: float, angle: float) -> None:
        self.image = image
        self.scale = scale
        c, s = math.cos(angle), math.sin(angle)
        self.matrix = np.array([[c, -s], [s, c]]) * scale
        self.centre = centre

    def to_canvas(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.matrix.T + self.centre

    def _fixed(self, pts: np.ndarray) -> np.ndarray:
        return np.round(self.to_canvas(pts) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def px(self, width: float) -> int:
        return max(1, int(round(width * self.scale)))

    def fill(self, pts: np.ndarray, colour: np.ndarray) -> None:
        cv2.fillPoly(self.image, [self._fixed(pts)], _bgr(colour), cv2.LINE_AA, _SHIFT)

    def line(self, pts: np.ndarray, colour: np.ndarray, width: float, closed: bool = False) -> None:
        cv2.polylines(self.image, [self._fixed(pts)], closed, _bgr(colour), self.px(width), cv2.LINE_AA, _SHIFT)


def _bgr(colour: np.ndarray) -> tuple[float, float, float]:
    b, g, r = (min(255.0, max(0.0, float(c))) for c in colour)
    return b, g, r


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _face_outline(theta: np.ndarray, height: float, chin: float) -> np.ndarray:
    """Egg-shaped head: the lower half narrows toward the chin."""
    y = height * np.sin(theta)
    narrow = 1.0 - chin * np.clip(np.sin(theta), 0.0, None) ** 2
    return np.stack([np.cos(theta) * narrow, y], axis=1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c1 = rng.uniform(15, 240, 3)
    c2 = np.clip(c1 + rng.normal(0, 60, 3), 0, 255)
    angle = rng.uniform(0, 2 * math.pi)
    grid = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = math.cos(angle) * grid[None, :] + math.sin(angle) * grid[:, None] + 0.5
    bg = c1.astype(np.float32) + (c2 - c1).astype(np.float32) * ramp[..., None]
    blobs = rng.normal(0, rng.uniform(5, 25), (4, 4, 3)).astype(np.float32)  # soft lighting blotches
    return bg + cv2.resize(blobs, (size, size), interpolation=cv2.INTER_CUBIC)


def _render_face(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Draw one face; returns (BGR uint8 image, (68, 2) landmarks in pixels, valence, arousal)."""
    name = EMOTIONS[label]
    intensity = 0.0 if name == "Neutral" else float(rng.uniform(_MIN_INTENSITY, _MAX_INTENSITY))
    p = _expression(name, intensity)

    # Individual variation, independent of the emotion.
    neutral_curve = float(rng.uniform(-0.025, 0.025))
    eye_jitter = float(rng.uniform(-0.015, 0.015))
    p["mouth_curve"] += neutral_curve
    p["eye_open"] = max(0.03, p["eye_open"] + eye_jitter)
    p["mouth_w"] += float(rng.uniform(-0.03, 0.03))
    # Neutral faces still vary a little in valence/arousal with the faint smile and eye opening they got.
    va_extra = (3.0 * neutral_curve, 3.0 * eye_jitter) if name == "Neutral" else (0.0, 0.0)
    valence, arousal = _valence_arousal(rng, name, intensity, va_extra)

    geo = {
        "height": rng.uniform(1.18, 1.36),
        "chin": rng.uniform(0.08, 0.25),
        "eye_x": rng.uniform(0.34, 0.42),
        "eye_y": rng.uniform(-0.20, -0.10),
        "eye_w": rng.uniform(0.14, 0.18),
        "brow_gap": rng.uniform(0.16, 0.24),
        "nose_y": rng.uniform(0.18, 0.28),
        "nose_w": rng.uniform(0.09, 0.14),
        "mouth_y": rng.uniform(0.52, 0.62),
        "lw": rng.uniform(0.025, 0.045),
        "brow_w": rng.uniform(0.035, 0.07),
    }
    skin_t = rng.uniform(0, 1)
    skin = (1 - skin_t) * np.array([175.0, 200.0, 240.0]) + skin_t * np.array([45.0, 75.0, 120.0])
    skin = skin + rng.normal(0, 8, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 8, 3)
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]
    hair_style = rng.choice(3, p=[0.15, 0.55, 0.30])  # bald, short, long
    hairline = rng.uniform(-0.95, -0.74)

    ss = 4 if size <= 128 else (3 if size <= 192 else 2)  # supersampling factor for anti-aliasing
    big = size * ss
    centre = np.array([big / 2 + rng.uniform(-0.06, 0.06) * big, big / 2 + rng.uniform(-0.05, 0.07) * big])
    canvas = _Canvas(
        image=np.empty((big, big, 3), np.uint8),
        centre=centre,
        scale=0.37 * big * rng.uniform(0.9, 1.1),
        angle=math.radians(rng.uniform(-10, 10)),
    )
    # The background is smooth, so it is made at the output size and only upscaled (cheap) for drawing.
    background = np.clip(_background(rng, size), 0, 255).astype(np.uint8)
    canvas.image[:] = cv2.resize(background, (big, big), interpolation=cv2.INTER_LINEAR)

    landmarks = _draw(canvas, rng, p, geo, skin, hair, iris, hair_style, hairline, name in _TEETH)

    image: np.ndarray = cv2.resize(canvas.image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 0.9))
    # Contrast, brightness and a slight colour cast, as between cameras and lighting conditions.
    offset = (rng.uniform(-30, 30) + rng.normal(0, 6, 3)).astype(np.float32)
    image = image * np.float32(rng.uniform(0.75, 1.2)) + offset
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 7.0))  # sensor
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    landmarks = (landmarks + 0.5) / ss - 0.5  # canvas pixel centres -> image pixel centres
    if rng.random() < 0.5:
        image = image[:, ::-1]
        landmarks[:, 0] = (size - 1) - landmarks[:, 0]
        landmarks = landmarks[_FLIP_68]
    return np.ascontiguousarray(image), landmarks, valence, arousal


def _draw(
    cv: _Canvas,
    rng: np.random.Generator,
    p: dict[str, float],
    g: dict[str, float],
    skin: np.ndarray,
    hair: np.ndarray,
    iris: np.ndarray,
    hair_style: int,
    hairline: float,
    teeth: bool,
) -> np.ndarray:
    """Draw head and features in face units; returns the 68 landmarks in canvas pixels."""
    h = g["height"]
    lw = g["lw"]
    shade = skin * 0.78
    line_dark = np.array([25.0, 25.0, 30.0])
    lip = skin * np.array([0.45, 0.42, 0.62])

    # Head: hair behind, neck, ears, face, fringe.
    if hair_style == 2:
        cv.fill(np.array([[-1.18, -0.4], [1.18, -0.4], [1.25, 1.6], [-1.25, 1.6]]), hair)
    cv.fill(np.array([[-0.5, 0.6], [0.5, 0.6], [0.62, 2.5], [-0.62, 2.5]]), shade)
    for side in (-1.0, 1.0):
        cv.fill(_ellipse(side * 0.98, -0.05, 0.13, 0.22, 24), shade)
    if hair_style:
        cv.fill(_ellipse(0.0, -0.22, 1.1, h * 0.92), hair)
    outline = _face_outline(np.linspace(0, 2 * math.pi, 72, endpoint=False), h, g["chin"])
    cv.fill(outline, skin)
    cv.line(outline, shade * 0.8, lw * 0.8, closed=True)
    if hair_style:
        # Cap over the forehead: the top of the head down to short sideburns, closed by a wavy hairline.
        top = _face_outline(np.linspace(math.pi, 2 * math.pi, 40), h * 1.02, 0.0) * [1.02, 1.0]
        top = top[top[:, 1] <= hairline + 0.35]
        x = np.linspace(top[-1, 0], top[0, 0], 15)
        fringe = np.stack([x, hairline + 0.2 * x**2 + 0.03 * np.sin(7 * x)], axis=1)
        cv.fill(np.concatenate([top, fringe]), hair)

    # Brows: five points inner -> outer for each side.
    brow_y0 = g["eye_y"] - p["eye_open"] * 0.4 - g["brow_gap"] - p["brow_raise"]
    u = np.linspace(0.0, 1.0, 5)
    brows = {}
    brow_colour = np.minimum(hair * 0.6, skin * 0.5)  # always darker than the skin, like real brows
    for side in (-1.0, 1.0):
        x = side * ((0.12 - p["brow_inner_x"]) + u * 0.46)
        y = (
            brow_y0
            - p["brow_inner"] * (1 - u) ** 1.5
            - p["brow_outer"] * u
            - 0.16 * u * (1 - u) * max(0.2, 1.0 - abs(p["brow_inner"]) / 0.17)  # strong brows straighten
            - (p["brow_asym"] if side > 0 else 0.0)
        )
        brows[side] = np.stack([x, y], axis=1)
        cv.line(brows[side], brow_colour, g["brow_w"])
    if p["frown_lines"] > 0.05:
        fx = 0.05 + 0.02 * p["brow_inner_x"] / 0.07
        for side in (-1.0, 1.0):
            cv.line(
                np.array([[side * fx, brow_y0 - 0.02], [side * fx * 0.7, brow_y0 + 0.1]]),
                skin * (1 - 0.4 * p["frown_lines"]),
                lw * 0.8,
            )

    # Eyes: almond shape, iris clipped to the lids, lash line on the upper lid.
    t = np.linspace(-1.0, 1.0, 15)
    eyes = {}
    gaze = rng.uniform(-0.025, 0.025, 2)
    for side in (-1.0, 1.0):
        ex, ey, ew = side * g["eye_x"], g["eye_y"], g["eye_w"]
        prof = (1 - t**2) ** 0.7
        upper = np.stack([ex + ew * t, ey - p["eye_open"] * prof], axis=1)
        lower = np.stack([ex + ew * t, ey + p["eye_open"] * p["eye_lower"] * prof], axis=1)
        cv.fill(np.concatenate([upper, lower[::-1]]), np.array([235.0, 238.0, 240.0]))
        circ = _ellipse(ex + gaze[0] * ew / 0.16, ey + gaze[1] * 0.3, 0.068, 0.068, 24)
        rel = np.clip((circ[:, 0] - ex) / ew, -1, 1)
        prof_c = (1 - rel**2) ** 0.7
        circ[:, 1] = np.clip(circ[:, 1], ey - p["eye_open"] * prof_c, ey + p["eye_open"] * p["eye_lower"] * prof_c)
        cv.fill(circ, iris)
        pupil = circ.copy()
        pupil[:, 0] = ex + gaze[0] * ew / 0.16 + (circ[:, 0] - circ[:, 0].mean()) * 0.45
        pupil[:, 1] = circ[:, 1].mean() + (circ[:, 1] - circ[:, 1].mean()) * 0.45
        cv.fill(pupil, line_dark * 0.5)
        cv.line(upper, line_dark, lw * 1.1)
        cv.line(lower, line_dark * 1.5 + shade * 0.3, lw * 0.6)
        eyes[side] = (upper, lower)

    # Nose: side line, tip arc, nostrils; wrinkles on the bridge for disgust.
    ny, nw = g["nose_y"] - 0.03 * p["nose_wrinkle"], g["nose_w"]
    cv.line(np.array([[0.06, g["eye_y"] + 0.02], [0.08, ny - 0.12]]), skin * 0.75, lw * 0.7)
    tip_x = np.linspace(-nw, nw, 9)
    tip = np.stack([tip_x, ny + 0.05 * (1 - (tip_x / nw) ** 2)], axis=1)
    cv.line(tip, shade * 0.75, lw)
    for side in (-1.0, 1.0):
        cv.fill(_ellipse(side * nw * 0.5, ny + 0.02, 0.03, 0.018, 12), shade * 0.55)
    if p["nose_wrinkle"] > 0.05:
        wc = skin * (1 - 0.45 * p["nose_wrinkle"])
        for k, yy in enumerate((-0.07, -0.01, 0.05)):
            wx = np.linspace(-0.11, 0.11, 7)
            cv.line(np.stack([wx, g["eye_y"] + 0.1 + yy + 1.5 * wx**2 + 0.01 * k], axis=1), wc, lw * 0.7)

    # Mouth.
    my = g["mouth_y"] + p["mouth_drop"]
    x, up, lo = _mouth_curves(p, my, t)
    gap = lo - up
    if p["cheek_folds"] > 0.05:
        fold_c = skin * (1 - 0.3 * p["cheek_folds"])
        for side in (-1.0, 1.0):
            s = np.linspace(0.0, 1.0, 8)
            corner = np.array([side * (p["mouth_w"] + 0.06), up[0 if side < 0 else -1] - 0.02])
            start = np.array([side * (nw + 0.1), ny - 0.02])
            pts = start + np.outer(s, corner - start) + np.outer(np.sin(s * math.pi), [side * 0.06, 0.0])
            cv.line(pts, fold_c, lw * 0.8)
    if gap.max() > 0.02:
        poly = np.concatenate([np.stack([x, up], 1), np.stack([x, lo], 1)[::-1]])
        cv.fill(poly, np.array([45.0, 35.0, 95.0]) * (0.6 + 0.4 * skin / 200.0))
        if teeth:
            teeth_lo = np.minimum(lo, up + np.minimum(gap * 0.5, 0.06))
            teeth_poly = np.concatenate([np.stack([x, up], 1), np.stack([x, teeth_lo], 1)[::-1]])
            cv.fill(teeth_poly, np.array([225.0, 235.0, 240.0]))
        cv.line(poly, lip, lw * (1.3 + 0.8 * p["lip_press"]), closed=True)
    else:
        mid = np.stack([x, (up + lo) / 2], 1)
        cv.line(mid, lip, lw * (1.3 + 1.2 * p["lip_press"]))
        lower_hint = np.stack([x[5:10] * 0.7, (up + lo)[5:10] / 2 + 0.09 + 0.02 * p["lip_press"]], 1)
        cv.line(lower_hint, skin * 0.86, lw * 0.7)

    jaw = _face_outline(np.linspace(math.pi + 0.12, -0.12, 17), h, g["chin"])
    return cv.to_canvas(_landmarks(p, jaw, brows, eyes, (ny, nw, g["eye_y"]), my))


def _mouth_curves(p: dict[str, float], my: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, upper-lip y and lower-lip y at the lip positions ``t`` in [-1, 1] (corner to corner)."""
    x = p["mouth_w"] * t
    centre = my - p["mouth_curve"] * t**2 - p["mouth_smirk"] * np.clip(t, 0, None) ** 2
    prof = np.clip(1 - t**2, 0, None) ** p["mouth_round"]
    up = centre - p["mouth_open"] * p["mouth_up"] * prof
    lo = centre + p["mouth_open"] * (1 - p["mouth_up"]) * prof
    if p["lip_raise"] > 0:  # snarl: raised on one side, wavy
        bump = np.clip(1 - t**2, 0, None) ** 0.6 * (0.35 + 0.65 * (t + 1) / 2) * (1 + 0.35 * np.sin(3 * math.pi * t))
        up = up - p["lip_raise"] * bump
    return x, up, lo


def _landmarks(
    p: dict[str, float],
    jaw: np.ndarray,
    brows: dict[float, np.ndarray],
    eyes: dict[float, tuple[np.ndarray, np.ndarray]],
    nose: tuple[float, float, float],
    my: float,
) -> np.ndarray:
    """68 iBUG-ordered points in face units (image-left first, as for an unflipped face).

    Taken from the same curves that were drawn, so a landmark-based model sees consistent geometry.
    """
    pts = [jaw]  # 0-16
    pts.append(brows[-1.0][::-1])  # 17-21: left brow, outer -> inner
    pts.append(brows[1.0])  # 22-26: right brow, inner -> outer
    ny, nw, eye_y = nose
    pts.append(np.stack([np.full(4, 0.0), np.linspace(eye_y + 0.02, ny, 4)], 1))  # 27-30
    pts.append(np.stack([np.linspace(-nw, nw, 5), ny + 0.03 + 0.02 * (1 - np.linspace(-1, 1, 5) ** 2)], 1))  # 31-35
    for side in (-1.0, 1.0):  # 36-41, 42-47: corner, 2 upper, corner, 2 lower (clockwise)
        upper, lower = eyes[side]
        pts.append(np.stack([upper[0], upper[5], upper[9], upper[14], lower[9], lower[5]]))
    lip = 0.035  # lip thickness: outer contour lies outside the drawn lip line
    t_out = np.array([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3])
    x, up, lo = _mouth_curves(p, my, t_out)
    outer_y = np.where(np.arange(12) <= 6, up - lip * (np.abs(t_out) < 1), lo + lip * (np.abs(t_out) < 1))
    pts.append(np.stack([x, outer_y], 1))  # 48-59
    t_in = np.array([-0.85, -0.4, 0, 0.4, 0.85, 0.4, 0, -0.4])
    x, up, lo = _mouth_curves(p, my, t_in)
    pts.append(np.stack([x, np.where(np.arange(8) <= 4, up, lo)], 1))  # 60-67
    return np.concatenate(pts)
