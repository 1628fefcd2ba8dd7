"""Training-step speed: fp32 vs bf16, NCHW vs channels_last, with and without AGMMLoss (issue 13).

    python bench/train_speed.py                       # ResNet-18 and Lite0, 128x128, batch 8
    python bench/train_speed.py --size 321 --batch 4 --backbones resnet18 --classes 21

Times full training steps (forward, loss, backward, SGD step) of the CamVid CPU preset's
DeepLabV3+ (128-channel decoder, as bench/camvid.py) on random images with 3 clicks per class,
for every backbone x precision x memory format, with L_seg only and with AGMMLoss, in one run.
Each setting is measured ``--repeats`` times, interleaved, and the median is reported, because a
shared CPU's speed drifts. Prints a markdown table; docs/training.md quotes it. The AGMMLoss
column is its cost over the L_seg-only step measured side by side (paper Table 11: +16 % FLOPs).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import torch

from agmm.config import load_config
from agmm.engine.optim import build_optimizer
from agmm.engine.train import cpu_has_native_bf16
from agmm.gmm.build import build_loss
from agmm.models.build import build_segmenter


def sparse_labels(
    batch: int, size: int, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """(B, H, W) weak labels: 3 labeled pixels per class per image, the rest 255."""
    labels = torch.full((batch, size, size), 255, dtype=torch.int64)
    ys = torch.randint(0, size, (batch, num_classes, 3), generator=generator)
    xs = torch.randint(0, size, (batch, num_classes, 3), generator=generator)
    b_idx = torch.arange(batch)[:, None, None].expand_as(ys)
    k_idx = torch.arange(num_classes)[None, :, None].expand_as(ys)
    labels[b_idx, ys, xs] = k_idx
    return labels


class StepTimer:
    """One model + loss + optimiser, built once per (backbone, loss) and timed per setting."""

    def __init__(self, backbone: str, with_gmm: bool, args, device: torch.device) -> None:
        cfg = load_config(
            "camvid/points",
            [
                f"model.backbone={backbone}",
                "model.pretrained=false",
                f"model.model_args={{decoder_channels: {args.width}, aspp_channels: {args.width}}}",
                f"loss.enabled={str(with_gmm).lower()}",
            ],
        )
        torch.manual_seed(0)
        self.model = build_segmenter(cfg, args.classes).to(device).train()
        self.loss_fn = build_loss(cfg, self.model, args.classes).to(device)
        self.optimizer = build_optimizer(self.model, self.loss_fn, cfg.train)
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
        self.images = self.images.to(device)
        self.labels = sparse_labels(args.batch, args.size, args.classes, generator).to(device)
        self.args, self.device = args, device

    def seconds_per_step(self, dtype: torch.dtype | None, channels_last: bool) -> float:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=memory_format)
        images = self.images.contiguous(memory_format=memory_format)

        def step() -> None:
            with torch.autocast(
                self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                out = self.model(images)
                loss = self.loss_fn(out["features"], out["logits"], self.labels)["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

        for _ in range(self.args.warmup):
            step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(self.args.steps):
            step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / self.args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "tf_efficientnet_lite0"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--width", type=int, default=128, help="ASPP and decoder channels")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per setting")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    bf16_ok = device.type == "cuda" or cpu_has_native_bf16()
    precisions = {"fp32": None, **({"bf16": torch.bfloat16} if bf16_ok else {})}
    formats = {"NCHW": False, "channels_last": True}
    timers = {
        (backbone, gmm): StepTimer(backbone, gmm, args, device)
        for backbone in args.backbones
        for gmm in (False, True)
    }
    settings = list(itertools.product(args.backbones, precisions, formats))
    seconds = {(*s, gmm): [] for s in settings for gmm in (False, True)}
    for _ in range(args.repeats):
        for backbone, precision, fmt in settings:
            for gmm in (False, True):  # side by side, so drift hits both alike
                timer = timers[(backbone, gmm)]
                value = timer.seconds_per_step(precisions[precision], formats[fmt])
                seconds[(backbone, precision, fmt, gmm)].append(value)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"DeepLabV3+ ({args.width}-ch decoder, OS 16), {args.size}x{args.size}, batch "
        f"{args.batch}, K = {args.classes}, {device.type} ({where or platform.machine()}, "
        f"{torch.get_num_threads()} threads), median of {args.repeats} x {args.steps} steps "
        f"after {args.warmup} warm-up step(s)\n"
    )
    print(
        "| backbone | precision | memory format | L_seg only ms/step | AGMM++ ms/step "
        "| AGMMLoss cost | speed-up vs fp32 NCHW (AGMM++) |"
    )
    print("|---|---|---|---|---|---|---|")
    for backbone, precision, fmt in settings:
        plain = statistics.median(seconds[(backbone, precision, fmt, False)])
        gmm = statistics.median(seconds[(backbone, precision, fmt, True)])
        reference = statistics.median(seconds[(backbone, "fp32", "NCHW", True)])
        print(
            f"| {backbone} | {precision} | {fmt} | {1000 * plain:.0f} | {1000 * gmm:.0f} | "
            f"{100 * (gmm / plain - 1):+.1f} % | {reference / gmm:.2f}x |"
        )


if __name__ == "__main__":
    main()
