"""Training-step speed: fp32 vs bf16, NCHW vs channels_last, with and without AGMMLoss (issue 13).

    python bench/train_speed.py                      # both tables, ResNet-18 and Lite0, K = 11
    python bench/train_speed.py --tables loss --classes 150 --backbones resnet18
    python bench/train_speed.py --tables preset      # the CamVid CPU preset, before vs now
    python bench/train_speed.py --tables terms --classes 21 --backbones resnet18   # per term

Times full training steps (forward, loss, backward, SGD step) on random images with 3 clicks per
class. Two tables:

- ``loss``: DeepLabV3+ (``--width``-channel decoder, as bench/camvid.py) at ``--size``, for every
  backbone x precision x memory format, with L_seg only and with AGMMLoss. AGMMLoss's cost over the
  L_seg-only step (paper Table 11: +16 % FLOPs) is given twice: as the difference of the two steps
  (drift leaves it good to about +-5 points), and as the GMM's own time measured in isolation
  (AGMMLoss minus L_seg alone, forward + backward on the model's outputs, medians of short calls)
  over the L_seg-only step timed in the same round.
- ``terms``: AGMMLoss alone with L_self, L_weak, L_con switched off one at a time (and all
  three), each minus L_seg alone: what every term costs (``--term-calls`` interleaved calls).
- ``preset``: the CamVid CPU preset as it is (``camvid/points``: its crop, batch, decoder), in the
  precision of issue 13's "before" (float32, NCHW, stock depthwise convolutions) and in the ways
  the library can run it now, each against "before".

A shared CPU's speed drifts by 10-30 % within minutes, so every setting is measured once per
round, side by side, for ``--repeats`` rounds; ratios (cost, speed-up) are the medians of the
per-round ratios, which cancel most of the drift, and times are medians.
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
    batch: int,
    size: int,
    num_classes: int,
    generator: torch.Generator,
    classes_per_image: int | None = None,
) -> torch.Tensor:
    """(B, H, W) weak labels: 3 labeled pixels per class of each image, the rest 255.

    Every image has every class, or ``classes_per_image`` random ones (ADE20K images have ~9).
    """
    per_image = min(classes_per_image or num_classes, num_classes)
    classes = torch.rand(batch, num_classes, generator=generator).argsort(dim=1)[:, :per_image]
    labels = torch.full((batch, size, size), 255, dtype=torch.int64)
    ys = torch.randint(0, size, (batch, per_image, 3), generator=generator)
    xs = torch.randint(0, size, (batch, per_image, 3), generator=generator)
    b_idx = torch.arange(batch)[:, None, None].expand_as(ys)
    labels[b_idx, ys, xs] = classes[:, :, None].expand_as(ys)
    return labels


class StepTimer:
    """One model + loss + optimiser for a config, built once and timed in several settings."""

    def __init__(
        self,
        overrides: list[str],
        num_classes: int,
        device: torch.device,
        *,
        classes_per_image: int | None = None,
    ) -> None:
        cfg = load_config("camvid/points", ["model.pretrained=false", *overrides])
        self.cfg = cfg
        torch.manual_seed(0)
        self.model = build_segmenter(cfg, num_classes).to(device).train()
        self.loss_fn = build_loss(cfg, self.model, num_classes).to(device)
        self.optimizer = build_optimizer(self.model, self.loss_fn, cfg.train)
        batch, size = cfg.train.batch_size, cfg.data.crop_size
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch, 3, size, size, generator=generator).to(device)
        self.labels = sparse_labels(batch, size, num_classes, generator, classes_per_image)
        self.labels = self.labels.to(device)
        self.device = device
        self.shape = (batch, size)

    def _setting(self, dtype: torch.dtype | None, channels_last: bool):
        """The model in the setting's memory format; its images and an autocast context maker."""
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=memory_format)
        images = self.images.contiguous(memory_format=memory_format)

        def autocast() -> torch.autocast:
            return torch.autocast(
                self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            )

        return images, autocast

    def seconds_per_step(self, dtype: torch.dtype | None, channels_last: bool, steps: int) -> float:
        images, autocast = self._setting(dtype, channels_last)

        def step() -> None:
            with autocast():
                out = self.model(images)
                loss = self.loss_fn(
                    out["features"],
                    out["logits"],
                    self.labels,
                    coarse_logits=out.get("coarse_logits"),  # as the trainer passes them
                )["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

        step()  # warm-up: a format or precision switch re-packs weights on the first step
        self._sync()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        self._sync()
        return (time.perf_counter() - started) / steps

    def loss_seconds(self, dtype: torch.dtype | None, channels_last: bool, calls: int) -> float:
        """Median forward + backward time of the loss alone, on this model's outputs for the batch
        (detached, in the step's precision and memory format): short enough to beat the drift."""
        call = self.loss_calls(dtype, channels_last)
        times = [call() for _ in range(calls + 2)]
        return statistics.median(times[2:])

    def loss_calls(self, dtype: torch.dtype | None, channels_last: bool):
        """A function that times one forward + backward of the loss alone (seconds) on this
        model's outputs for the batch, detached, in the given precision and memory format."""
        images, autocast = self._setting(dtype, channels_last)
        with torch.no_grad(), autocast():
            out = self.model(images)

        def call() -> float:
            features = out["features"].detach().requires_grad_()
            logits = out["logits"].detach().requires_grad_()
            coarse = out.get("coarse_logits")
            if coarse is not None:
                coarse = coarse.detach().requires_grad_()
            self._sync()
            started = time.perf_counter()
            with autocast():
                loss = self.loss_fn(features, logits, self.labels, coarse_logits=coarse)["loss"]
            loss.backward()
            self._sync()
            return time.perf_counter() - started

        return call

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def measure_rounds(
    settings: dict, repeats: int, steps: int, loss_calls: int = 0
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``settings``: name -> (timer, dtype, channels_last); every name once per round.

    Returns the seconds per step and, with ``loss_calls``, each setting's loss alone timed right
    after its step (``StepTimer.loss_seconds``), so that both come from the same minute of the
    host's drift; lists of one value per round.
    """
    seconds = {name: [] for name in settings}
    loss = {name: [] for name in settings}
    for _ in range(repeats):
        for name, (timer, dtype, channels_last) in settings.items():
            seconds[name].append(timer.seconds_per_step(dtype, channels_last, steps))
            if loss_calls:
                loss[name].append(timer.loss_seconds(dtype, channels_last, loss_calls))
    return seconds, loss


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator / denominator (both measured in the same round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def _table_timer(args, device, backbone: str, *settings: str) -> StepTimer:
    """The loss and terms tables' DeepLabV3+ (``--width`` decoder, ``--size`` crops, ``--batch``)
    on ``backbone`` with ``settings``, then the user's ``--override``s."""
    width = f"model.model_args={{decoder_channels: {args.width}, aspp_channels: {args.width}}}"
    shape = [f"data.crop_size={args.size}", f"train.batch_size={args.batch}"]
    return StepTimer(
        [f"model.backbone={backbone}", width, *shape, *settings, *args.override],
        args.classes,
        device,
        classes_per_image=args.classes_per_image,
    )


def loss_table(args, device, precisions) -> None:
    formats = {"NCHW": False, "channels_last": True}
    timers = {
        (backbone, gmm): _table_timer(args, device, backbone, f"loss.enabled={str(gmm).lower()}")
        for backbone in args.backbones
        for gmm in (False, True)
    }
    rows = list(itertools.product(args.backbones, precisions, formats))
    settings = {
        (*row, gmm): (timers[(row[0], gmm)], precisions[row[1]], formats[row[2]])
        for row in rows
        for gmm in (False, True)  # side by side, so drift hits both alike
    }
    # the loss alone, L_seg only and AGMM++ alternating, in the rounds of the steps
    seconds, isolated = measure_rounds(
        settings, args.repeats, args.steps, loss_calls=args.loss_calls
    )
    loss_cfg = timers[(args.backbones[0], True)].cfg.loss
    print(
        f"Loss table: DeepLabV3+ ({args.width}-ch decoder, OS 16), {args.size}x{args.size}, batch "
        f"{args.batch}, K = {args.classes} ({args.classes_per_image or 'all'} per image); "
        f"{_where(device)}; {args.repeats} rounds x {args.steps} steps; "
        f"loss.self_pooling={loss_cfg.self_pooling}{_overrides(args)}\n"
    )
    print(
        "| backbone | precision | memory format | L_seg only ms/step | AGMM++ ms/step "
        "| AGMMLoss cost (step difference) | GMM fwd+bwd ms (isolated) | AGMMLoss cost (isolated) "
        "| speed-up vs fp32 NCHW (AGMM++) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for backbone, precision, fmt in rows:
        plain = seconds[(backbone, precision, fmt, False)]
        gmm = seconds[(backbone, precision, fmt, True)]
        reference = seconds[(backbone, "fp32", "NCHW", True)]
        # the GMM's own time: AGMMLoss minus L_seg alone, over the L_seg-only step of its round
        extras = [
            a - b
            for a, b in zip(
                isolated[(backbone, precision, fmt, True)],
                isolated[(backbone, precision, fmt, False)],
                strict=True,
            )
        ]
        extra = statistics.median(extras)
        share = statistics.median(a / b for a, b in zip(extras, plain, strict=True))
        print(
            f"| {backbone} | {precision} | {fmt} | {1000 * statistics.median(plain):.0f} | "
            f"{1000 * statistics.median(gmm):.0f} | {100 * (median_ratio(gmm, plain) - 1):+.1f} % "
            f"| {1000 * extra:.1f} | {100 * share:+.1f} % "
            f"| {median_ratio(reference, gmm):.2f}x |"
        )
    print()


TERM_VARIANTS = {
    "AGMM++": [],
    "without L_self": ["loss.use_self=false"],
    "without L_weak": ["loss.use_weak=false"],
    "without L_con": ["loss.use_con=false"],
    "the fit alone (no GMM term: squeeze, E-step, forward only)": [
        "loss.use_self=false",
        "loss.use_weak=false",
        "loss.use_con=false",
    ],
}


def terms_table(args, device, precisions) -> None:
    """What each GMM term costs: AGMMLoss alone, forward + backward, with one term off at a time,
    minus L_seg alone; every variant once per round, call by call (``--term-calls`` rounds), on
    the first backbone's outputs for one batch, in bf16 (fp32 where the device has no bf16) and
    channels_last."""
    backbone = args.backbones[0]
    precision = "bf16" if "bf16" in precisions else "fp32"
    timers = {
        name: _table_timer(args, device, backbone, "loss.enabled=true", *extra)
        for name, extra in TERM_VARIANTS.items()
    }
    timers["L_seg only"] = _table_timer(args, device, backbone, "loss.enabled=false")
    calls = {name: timer.loss_calls(precisions[precision], True) for name, timer in timers.items()}
    seconds = {name: [] for name in timers}
    for _ in range(args.term_calls):
        for name, call in calls.items():
            seconds[name].append(call())
    plain = statistics.median(seconds["L_seg only"])
    print(
        f"Terms table: AGMMLoss alone on a {backbone} DeepLabV3+'s outputs "
        f"({args.width}-ch decoder, {args.size}x{args.size}, batch {args.batch}), K = "
        f"{args.classes} ({args.classes_per_image or 'all'} per image), {precision}, "
        f"channels_last; {_where(device)}; {args.term_calls} calls of each, interleaved"
        f"{_overrides(args)}\n"
    )
    print("| variant | ms (forward + backward) | over L_seg only |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.2f} | {1000 * (median - plain):+.2f} |")
    print()


def preset_table(args, device, precisions) -> None:
    # "before" = issue 13's code as far as a switch reaches it (its L_seg took a softmax of every
    # pixel, which no switch brings back: the "before" step is a little faster than it was)
    stock = ["model.fast_depthwise=false", "loss.self_pooling=probs"]
    before = StepTimer([*args.override, *stock], args.classes, device)
    now = StepTimer(list(args.override), args.classes, device)
    settings = {"before: fp32, NCHW, stock depthwise, P pooled": (before, None, False)}
    if "bf16" in precisions:
        settings["bf16, NCHW, stock depthwise, P pooled"] = (before, torch.bfloat16, False)
        settings["bf16, channels_last, stock depthwise, P pooled"] = (before, torch.bfloat16, True)
    settings["fp32, NCHW, fast depthwise"] = (now, None, False)
    if "bf16" in precisions:
        settings["bf16, NCHW, fast depthwise"] = (now, torch.bfloat16, False)
        settings["bf16, channels_last, fast depthwise (default)"] = (now, torch.bfloat16, True)
    seconds, _ = measure_rounds(settings, args.repeats, args.steps)
    reference = seconds["before: fp32, NCHW, stock depthwise, P pooled"]
    batch, size = now.shape
    print(
        f"Preset table: camvid/points as shipped (tf_efficientnet_lite0, 256-ch decoder, "
        f"{size}x{size} crops, batch {batch}), K = {args.classes}, AGMM++; {_where(device)}; "
        f"{args.repeats} rounds x {args.steps} steps{_overrides(args)}\n"
    )
    print("| setting | ms/step | speed-up vs before |")
    print("|---|---|---|")
    for name, values in seconds.items():
        print(
            f"| {name} | {1000 * statistics.median(values):.0f} | "
            f"{median_ratio(reference, values):.2f}x |"
        )
    print()


def _overrides(args) -> str:
    return f"; overrides: {' '.join(args.override)}" if args.override else ""


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tables", nargs="+", choices=("loss", "terms", "preset"), default=["loss", "preset"]
    )
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "tf_efficientnet_lite0"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--classes-per-image", type=int, default=None, help="default: all K")
    parser.add_argument("--width", type=int, default=128, help="ASPP and decoder channels")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="rounds")
    parser.add_argument(
        "--loss-calls",
        type=int,
        default=15,
        help="loss-alone calls per setting and round (loss table's isolated columns; median)",
    )
    parser.add_argument(
        "--term-calls", type=int, default=100, help="calls of each variant (terms table)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--override", nargs="*", default=[], help="extra key=value for every model")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    bf16_ok = device.type == "cuda" or cpu_has_native_bf16()
    precisions = {"fp32": None, **({"bf16": torch.bfloat16} if bf16_ok else {})}
    if "loss" in args.tables:
        loss_table(args, device, precisions)
    if "terms" in args.tables:
        terms_table(args, device, precisions)
    if "preset" in args.tables:
        preset_table(args, device, precisions)


if __name__ == "__main__":
    main()
