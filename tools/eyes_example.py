"""Draw the eyes page's example: the bundled model with ``eyes=True`` on scikit-image's public-domain astronaut
photo (enlarged twice, so that the irises are visible), cropped to her head, into ``docs/images/eyes_example.png``.

    python tools/eyes_example.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from affectlab.runtime.predictor import load

OUT = ROOT / "docs" / "images" / "eyes_example.png"


def main() -> None:
    from skimage import data

    image = cv2.resize(data.astronaut(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)[40:460, 200:680].copy()
    result = load(None, detector="haar", eyes=True, workers=1).predict(image, keep_images=True)
    face = result[0]
    assert face.eyes is not None and not face.eyes.rejected, "no eyes found on the astronaut"
    drawn = result.plot()
    cv2.imwrite(str(OUT), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(
        f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size} bytes; {face.eyes.to_dict() | {'iris': '...', 'eye_contours': '...'}}"
    )


if __name__ == "__main__":
    main()
