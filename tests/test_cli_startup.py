"""A mistyped value on the command line is answered before torch is imported, and ``--version`` answers at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from affectlab.cli import main
from affectlab.version import __version__

#: Runs the CLI in a fresh interpreter, then reports which heavy packages the refusal had imported.
PROBE = (
    "import sys\n"
    "from affectlab.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "heavy = sorted(m for m in ('torch', 'torchvision', 'lightning', 'cv2') if m in sys.modules)\n"
    "print(code, ','.join(heavy) or 'none')\n"
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--data", "demo", "--backbone", "resnet19", "--out", "{tmp}/x"],
            "unknown backbone 'resnet19'; available: efficientnet_b0, face_resnet29, facemesh, mobilenet_v2, resnet18, resnet50, vgg16",
        ),
        (
            ["study", "--data", "demo", "--backbones", "resnet18,vgg17", "--out", "{tmp}/x"],
            "unknown backbone 'vgg17'; available: efficientnet_b0",
        ),
        (
            ["study", "--data", "demo", "--tasks", "classification,multitsk", "--out", "{tmp}/x"],
            "study.tasks=['classification', 'multitsk'] has an item that is not one of classification, regression",
        ),
        (["predict", "{tmp}", "x.jpg", "--detector", "yunet2"], "unknown face detector 'yunet2'; available: auto"),
        (["train", "--recipe", "bset", "--data", "demo", "--out", "{tmp}/x"], "bset: recipe file not found (packaged"),
        (["train", "--data", "{tmp}/nothing", "--out", "{tmp}/x"], "nothing: no such file or folder"),
        (["train", "--data", "demo", "--split-file", "{tmp}/s.json", "--out", "{tmp}/x"], "s.json: split file not"),
        (["train", "--data", "demo", "--set", "train.lr=fast", "--out", "{tmp}/x"], "train.lr='fast' should be"),
        (["predict", "{tmp}/missing.pt", "x.jpg"], "missing.pt: model not found"),
        (["export", "{tmp}/missing.pt"], "missing.pt: model file not found"),
        (["evaluate", "{tmp}/missing"], "missing: run folder not found"),
    ],
)
def test_wrong_values_are_refused_before_torch_is_imported(argv: list[str], message: str, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True, timeout=600
    )
    assert proc.stdout.split() == ["2", "none"], proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"affectlab: error: {proc.stderr.split('error: ', 1)[1].strip()}"]
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "x").exists()


def test_the_names_only_registries_match_the_real_ones() -> None:
    from affectlab.models.backbone_names import BACKBONE_NAMES
    from affectlab.models.backbones import list_backbones
    from affectlab.runtime.detector_names import DETECTOR_NAMES
    from affectlab.runtime.faces import DETECTORS

    assert sorted(BACKBONE_NAMES) == list_backbones()
    assert tuple(DETECTORS) == DETECTOR_NAMES


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"affectlab {__version__}"
