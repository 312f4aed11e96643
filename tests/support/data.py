"""Small datasets written by the tests, and the cache isolation every test session gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Cache folders a test run must never read or write outside its own temporary folder.
ISOLATED_ENV = {"AFFECTLAB_CACHE": "affectlab-cache", "TORCH_HOME": "torch-home"}


def write_affectnet(root: Path, rows: list[tuple[str, object, object, object]], size: int = 32, seed: int = 0) -> Path:
    """Write an AffectNet-layout folder: rows of (id, exp, val, aro) saved as 0-d unicode arrays like the release."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for sample_id, exp, val, aro in rows:
        cv2.imwrite(str(root / "images" / f"{sample_id}.jpg"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for key, value in (("exp", exp), ("val", val), ("aro", aro)):
            if value is not None:
                np.save(root / "annotations" / f"{sample_id}_{key}.npy", np.array(str(value)))
    return root


def write_class_folders(root: Path, classes: dict[str, int], size: int = 24, grey: bool = True, seed: int = 0) -> Path:
    """Write a class-folder dataset (``root/<class>/<i>.png``), like FER-2013's release: {folder name: count}."""
    import cv2

    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            shape = (size, size) if grey else (size, size, 3)
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 255, shape, dtype=np.uint8))
    return root
