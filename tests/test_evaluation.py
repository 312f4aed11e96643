"""predict_images: what flip test-time augmentation computes, checked against the model called by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from support.models import INPUT_SIZE, make_run

from affectlab.models.checkpoint import load_checkpoint
from affectlab.models.outputs import predict_images


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror(tmp_path: Path) -> None:
    model, meta = load_checkpoint(make_run(tmp_path))  # outputs that vary with the input, and with mirroring
    preprocess = meta.preprocess
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])  # NHWC: left-right
    with torch.no_grad():
        a, b = (model(preprocess.normalise(torch.from_numpy(x))) for x in (images, mirrored))
    expected_probs = torch.softmax((a["expression"] + b["expression"]) / 2, dim=1).numpy()
    expected_va = ((a["va"] + b["va"]) / 2).numpy()

    out = predict_images(model, images, preprocess, batch_size=2, tta_flip=True)  # batches of 2, 2 and 1
    np.testing.assert_allclose(out["probs"], expected_probs, atol=1e-5)
    np.testing.assert_allclose(out["va"], expected_va, atol=1e-5)
    # The test tells the alternatives apart: the mean of the two softmaxes, and no TTA at all.
    mean_of_probs = ((torch.softmax(a["expression"], 1) + torch.softmax(b["expression"], 1)) / 2).numpy()
    assert np.abs(mean_of_probs - expected_probs).max() > 1e-3
    single = predict_images(model, images, preprocess, tta_flip=False)
    np.testing.assert_allclose(single["probs"], torch.softmax(a["expression"], 1).numpy(), atol=1e-5)
    assert np.abs(single["probs"] - expected_probs).max() > 1e-3
