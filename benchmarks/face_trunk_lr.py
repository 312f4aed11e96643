"""How fast the face ResNet's trunk may learn: its pooled features over a few AdamW steps at several trunk rates.

dlib folded its batch norms into per-channel affine layers, so ``face_resnet29`` fine-tunes without batch
normalisation: an update that is small for MobileNetV2 (whose batch norms re-centre every layer) compounds
through 29 convolutions here. This script trains the ``face`` recipe's model (multitask heads off: expression
only) for a dozen steps on 64 faces of a dataset, once per trunk learning rate, from the same seed and the same
batches, and prints after each step the training loss and the pooled features' mean and largest value on 32
other faces. A rate whose features grow tenfold in a step collapses the training to one class (what 5e-4, the
MobileNetV2 recipe's rate, did in every seed); ``recipes/best.yaml`` takes 2e-5.

    python benchmarks/face_trunk_lr.py --data ../shared/data/affectnet-3999 --rates 5e-4,5e-5,2e-5
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from affectlab.config import DataConfig, ModelConfig
from affectlab.data.dataset import open_dataset
from affectlab.data.transforms import Preprocess
from affectlab.models.affect_model import create_model
from affectlab.models.weights import resolve_backbone


def faces(data: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """96 faces of the dataset's training split (64 to train, 32 to watch), as the recipe preprocesses them."""
    split = open_dataset(DataConfig(path=data), size).splits["train"]
    backbone = resolve_backbone("face_resnet29", "face")
    x = Preprocess(size, backbone.mean, backbone.std).normalise(torch.as_tensor(split.images[:96]))
    return x, torch.as_tensor(split.expression[:96])


def steps(x: torch.Tensor, y: torch.Tensor, trunk_lr: float, count: int) -> None:
    torch.manual_seed(0)
    model = create_model(
        ModelConfig(backbone="face_resnet29", weights="face", task="classification", input_size=x.shape[-1],
                    head_norm=True, freeze=False)
    )  # fmt: skip
    trunk = [p for n, p in model.named_parameters() if n.startswith("trunk.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("trunk.")]
    optimiser = torch.optim.AdamW([{"params": trunk, "lr": trunk_lr}, {"params": rest, "lr": 1e-3}], weight_decay=0.05)
    batches = torch.Generator().manual_seed(0)
    print(f"trunk lr {trunk_lr:g}")
    for step in range(count):
        model.train()
        pick = torch.randint(0, 64, (32,), generator=batches)
        loss = F.cross_entropy(model(x[pick])["expression"], y[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            pooled = model.trunk(x[64:]).mean((2, 3))
        print(f"  step {step + 1:2d}: loss {loss.item():.3f}, pooled mean {pooled.mean():.3g}, max {pooled.max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset affectlab reads (e.g. ../shared/data/affectnet-3999)")
    parser.add_argument("--rates", default="5e-4,5e-5,2e-5", help="trunk learning rates, comma-separated")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--input-size", type=int, default=150)
    args = parser.parse_args()
    x, y = faces(args.data, args.input_size)
    for rate in args.rates.split(","):
        steps(x, y, float(rate), args.steps)


if __name__ == "__main__":
    main()
