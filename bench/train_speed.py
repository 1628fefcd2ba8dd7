"""Training speed of ResNet-18 DeepLabV3+ at 321x321 with and without AGMMLoss (paper Table 11).

    python bench/train_speed.py [--batch 4] [--steps 5] [--warmup 2] [--size 321] [--device auto]

Times full training steps (forward, loss, backward, SGD step) on random images with 3 clicks per
class, after a few warm-up steps, and prints a markdown table of images/s and ms/step. Each
setting is measured ``--repeats`` times, interleaved, and the median is reported, because a
shared CPU's speed drifts. The numbers in docs/training.md come from this script.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from agmm.config import load_config
from agmm.engine.build import build_loss, build_segmenter
from agmm.engine.optim import build_optimizer

SETTINGS = {
    "L_seg only": ["loss.enabled=false"],
    "AGMM++ (L_seg + L_self + L_weak + L_con, 1 OEM step)": [],
}


def sparse_labels(
    batch: int, size: int, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """(B, H, W) weak labels: 3 labeled pixels per class per image, the rest 255."""
    labels = torch.full((batch, size, size), 255, dtype=torch.int64)
    for b in range(batch):
        for k in range(num_classes):
            ys = torch.randint(0, size, (3,), generator=generator)
            xs = torch.randint(0, size, (3,), generator=generator)
            labels[b, ys, xs] = k
    return labels


def time_steps(overrides: list[str], args, device: torch.device) -> float:
    """Seconds per training step (mean over ``args.steps`` timed steps)."""
    cfg = load_config(
        "camvid/points", ["model.backbone=resnet18", "model.pretrained=false", *overrides]
    )
    num_classes = 11
    torch.manual_seed(0)
    model = build_segmenter(cfg, num_classes).to(device).train()
    loss_fn = build_loss(cfg, model, num_classes).to(device)
    optimizer = build_optimizer(model, loss_fn, cfg.train)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator).to(device)
    labels = sparse_labels(args.batch, args.size, num_classes, generator).to(device)

    def step() -> None:
        out = model(images)
        loss = loss_fn(out["features"], out["logits"], labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per setting")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    seconds = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, overrides in SETTINGS.items():
            seconds[name].append(time_steps(overrides, args, device))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"ResNet-18 DeepLabV3+ (OS 16), {args.size}x{args.size}, batch {args.batch}, "
        f"{device.type} ({where or platform.machine()}, {torch.get_num_threads()} threads), "
        f"median of {args.repeats} x {args.steps} steps after {args.warmup} warm-up steps\n"
    )
    print("| setting | images/s | ms/step | step time vs L_seg only |")
    print("|---|---|---|---|")
    baseline = statistics.median(seconds["L_seg only"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"| {name} | {args.batch / median:.2f} | {1000 * median:.0f} | "
            f"{100 * (median / baseline - 1):+.1f} % |"
        )


if __name__ == "__main__":
    main()
