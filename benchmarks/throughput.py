"""Training throughput: end-to-end (views made on the training device) vs compute only.

    python benchmarks/throughput.py                      # CPU: ResNet-18 CIFAR stem, batch 64
    python benchmarks/throughput.py --device cuda --batch-size 512 --precision bf16

Compute only: one fixed batch of pre-made views goes through encoder + loss + backward +
optimizer step again and again. End to end: every step indexes a batch of uint8 images that
live on the device, makes V views with :class:`contrastkit.views.image.ImageViews`
(``simclr_cifar`` preset), then does the same compute. The target is end to end >= 90% of
compute only. Images are random uint8 32x32x3 (content does not change the cost).
Writes ``benchmarks/results/throughput.json`` (appending one record per run).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from contrastkit.encoders import Encoder, ProjectionHead, SmallCNN, resnet18
from contrastkit.losses import info_nce
from contrastkit.views.image import ImageViews, augmentation_preset

RESULTS = Path(__file__).parent / "results" / "throughput.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet18", choices=["resnet18", "small_cnn"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--dataset-size", type=int, default=10000)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    backbone = (
        resnet18(cifar_stem=True)
        if args.backbone == "resnet18"
        else SmallCNN(in_channels=3, out_dim=None)
    )
    model = Encoder(backbone, ProjectionHead(backbone.feature_dim, 2048, 128)).to(device)
    model = model.to(memory_format=torch.channels_last) if device.type == "cuda" else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    views = ImageViews(augmentation_preset("simclr_cifar", size=32), views=args.views).to(device)
    images = torch.randint(0, 256, (args.dataset_size, 3, 32, 32), dtype=torch.uint8, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def compute(batch_views: torch.Tensor) -> None:
        b, v = batch_views.shape[:2]
        with autocast:
            _, z = model(batch_views.flatten(0, 1))
            loss = info_nce(z.reshape(b, v, -1), temperature=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def make_views() -> torch.Tensor:
        index = torch.randint(0, args.dataset_size, (args.batch_size,), device=device)
        return views(images[index])

    def rate(step) -> float:
        for _ in range(args.warmup):
            step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        _sync(device)
        return args.steps * args.batch_size / (time.perf_counter() - start)

    fixed = make_views()
    compute_only = rate(lambda: compute(fixed))
    end_to_end = rate(lambda: compute(make_views()))
    views_only = rate(make_views)
    record = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "views": args.views,
        "precision": args.precision,
        "compute_only_instances_per_s": round(compute_only, 1),
        "end_to_end_instances_per_s": round(end_to_end, 1),
        "views_only_instances_per_s": round(views_only, 1),
        "end_to_end_fraction": round(end_to_end / compute_only, 3),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    print(json.dumps(record, indent=2))
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([*records, record], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
