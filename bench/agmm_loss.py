"""Cost of AGMMLoss beside one training step of a ResNet-18 DeepLabV3+ (issue 3's benchmark).

For B=8, C'=64, features 80x80 (input 320x320, stride 4), K in {11, 21, 150} and both distances,
prints the forward+backward time and peak memory of AGMMLoss alone, and the time of a full training
step (model forward, L_seg only vs L_seg + AGMMLoss, backward, SGD step). Each measurement runs in
its own subprocess so that peak RSS (ru_maxrss) is not polluted by the previous one.

    python bench/agmm_loss.py            # full table (about 10 min on 2 CPU cores)
    python bench/agmm_loss.py --quick    # K=21 only, fewer repeats
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    kind: str, num_classes: int, distance: str, repeats: int, batch: int, size: int
) -> dict:
    """Runs inside a fresh subprocess; returns seconds per iteration and peak RSS growth (MB)."""
    import torch

    from agmm import AGMMLoss
    from agmm.models import build_model

    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    labels = torch.full((batch, size, size), 255)
    # scribble-like supervision: ~3 % of the pixels, 5 classes per image
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(batch, size, size, generator=gen) < 0.03
    labels[mask] = torch.randint(0, min(5, num_classes), (int(mask.sum()),), generator=gen)
    criterion = AGMMLoss(in_channels=256, num_classes=num_classes, distance=distance)

    if kind == "loss":
        features = torch.randn(batch, 256, size // 4, size // 4, requires_grad=True)
        logits = torch.randn(batch, num_classes, size, size, requires_grad=True)

        def step():
            criterion(features, logits, labels)["loss"].backward()

    else:
        model = build_model("deeplabv3plus", num_classes=num_classes, backbone="resnet18")
        params = [*model.parameters(), *criterion.parameters()]
        optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        use_gmm = kind == "step_gmm"

        def step():
            out = model(images)
            if use_gmm:
                loss = criterion(
                    out["features"], out["logits"], labels, coarse_logits=out["coarse_logits"]
                )["loss"]
            else:
                loss = torch.nn.functional.cross_entropy(out["logits"], labels, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    step()  # warm-up (allocator, kernels)
    base_rss = _rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"seconds": times[len(times) // 2], "peak_rss_growth_mb": _rss_mb() - base_rss}


def run_child(**kwargs) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(kwargs)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return

    import torch

    classes = [21] if args.quick else [11, 21, 150]
    repeats = 2 if args.quick else 3
    common = {"repeats": repeats, "batch": args.batch, "size": args.size}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch}, "
        f"input {args.size}x{args.size}, features {args.size // 4}x{args.size // 4}, C'=64\n"
    )
    print(
        "| K | distance | AGMMLoss fwd+bwd (s) | AGMMLoss peak mem (MB) | R18 step, L_seg only (s) "
        "| R18 step + AGMMLoss (s) | overhead |"
    )
    print("|---|---|---|---|---|---|---|")
    for num_classes in classes:
        base = run_child(kind="step_seg", num_classes=num_classes, distance="l1", **common)
        for distance in ("l1", "sqeuclid"):
            loss = run_child(kind="loss", num_classes=num_classes, distance=distance, **common)
            full = run_child(kind="step_gmm", num_classes=num_classes, distance=distance, **common)
            overhead = full["seconds"] / base["seconds"] - 1.0
            print(
                f"| {num_classes} | {distance} | {loss['seconds']:.3f} | {loss['peak_rss_growth_mb']:.0f} "
                f"| {base['seconds']:.3f} | {full['seconds']:.3f} | {overhead:+.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
