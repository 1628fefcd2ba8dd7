"""``agmm train`` and ``agmm demo``: parse arguments, call :func:`agmm.engine.train.train`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agmm.config import _deep_merge, config_from_dict, load_config, parse_overrides
from agmm.errors import ConfigError
from agmm.runtime.checkpoint import load_checkpoint, resolve_resume


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="train on synthetic shapes with L_seg only and with AGMM++, compare, draw pictures",
        description="Trains the synthetic/demo config twice (L_seg only, then AGMM++) on this "
        "machine, prints their mIoU and the GMM pseudo-label mIoU, and writes panels, training "
        "curves and an HTML report. About 2-4 minutes on 2 CPU cores.",
    )
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--steps", type=int, default=None, help="training steps of each run")
    demo.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    demo.set_defaults(func=run_demo)

    train = subparsers.add_parser(
        "train",
        help="train a segmenter with AGMM++ from a config",
        description="Train from a shipped config name (e.g. camvid/points) or a YAML path, with "
        "key=value overrides (e.g. train.steps=200 loss.distance=sqeuclid). Multi-GPU / multi-node: "
        "torchrun --nproc_per_node N -m agmm train ...",
    )
    train.add_argument("--config", "-c", help="shipped config name or YAML file")
    train.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH",
        help="continue from a checkpoint (default with no PATH: OUTPUT_DIR/last.pt if it exists)",
    )
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    if args.config is None:
        if args.resume in (None, "auto"):
            raise ConfigError(
                "--config is required (or --resume PATH to continue a run with its own config)"
            )
        cfg = _config_from_checkpoint(args.resume, args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    from agmm.engine.train import train

    result = train(cfg, resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:  # the process group is gone by now
        shown = {k: v for k, v in result.items() if k not in ("output_dir",)}
        print("  ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
    return 0


def _config_from_checkpoint(path: str, overrides: list[str]):
    """The config a checkpoint was trained with, plus overrides."""
    resolved = resolve_resume(path, ".")
    state = load_checkpoint(resolved)
    return config_from_dict(_deep_merge(state["config"], parse_overrides(overrides)))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------
# demo


def run_demo(args: argparse.Namespace) -> int:
    from agmm.engine.demo import run_demo as demo

    demo(out=Path(args.out), steps=args.steps, overrides=list(args.overrides))
    return 0
