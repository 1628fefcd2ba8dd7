"""``agmm eval | predict | pseudo-labels | export | report``: parse, then call one library function.

``eval``, ``predict`` and ``pseudo-labels`` run with the checkpoint's config plus ``key=value``
overrides of ``data.*``, ``eval.*`` and ``seed``, parsed as ``agmm train`` parses them: the test
protocol (scales, flip, sliding window, CRF, batch size) is ``cfg.eval`` and the image size
``data.eval_resize``, exactly what validation used during training. Their own flags are inputs
and outputs only.

The stages a verb runs (data, models, eval, viz) are imported inside its function, so that
``agmm --help``, which imports every commands module, does not import the whole library.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import torch

from agmm.config import DataConfig, apply_overrides, parse_overrides
from agmm.errors import CheckpointError, ConfigError
from agmm.outputs import publish, staging_dir
from agmm.runtime.distributed import barrier, cleanup, init_distributed, is_main

# Config sections a test-time command may override: the data it reads and the test protocol.
# The model and its loss are the checkpoint's.
TEST_TIME_SECTIONS = ("data", "eval", "seed")

# Keys of the checkpoint's data section that belong to its own dataset: another dataset
# (data.name=...) starts them from their defaults unless they are overridden too.
OWN_DATASET_KEYS = ("root", "dataset_args", "eval_resize", "weak_label_dir", "weak_label_args")

# The flags these commands had before they read the checkpoint's config, and what replaced them.
REPLACED_FLAGS = {
    "--scales": "eval.scales=[0.75,1.0,1.25]",
    "--flip": "eval.flip=true",
    "--sliding": "eval.sliding={crop: [H, W]}",
    "--crf": "eval.crf=true",
    "--batch-size": "eval.batch_size=N",
    "--resize": "data.eval_resize=N (or 0: the images' own size)",
    "--data": "data.name=NAME",
    "--root": "data.root=DIR",
    "--supervision": "data.supervision=KIND",
    "--weak-label-dir": "data.weak_label_dir=DIR",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_eval(subparsers)
    _register_predict(subparsers)
    _register_pseudo_labels(subparsers)
    _register_export(subparsers)
    _register_report(subparsers)


# ---------------------------------------------------------------------------------------------
# shared arguments


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint written by `agmm train` (or its run folder)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")


def _add_overrides(parser: argparse.ArgumentParser, *replaced: str) -> None:
    """``key=value`` overrides of the checkpoint's config, and the ``replaced`` old flags, which
    stop with the override that replaced them."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides of the checkpoint's config, as for `agmm train`: the test protocol "
        "(eval.scales=[0.75,1.0,1.25] eval.flip=true eval.sliding={crop: [512, 1024]} "
        "eval.crf=true eval.batch_size=N) and the data (data.name, data.root, "
        "data.eval_resize, ...); default: what validation used during training",
    )
    for flag in replaced:
        parser.add_argument(flag, action=_ReplacedFlag, help=argparse.SUPPRESS)


class _ReplacedFlag(argparse.Action):
    """A flag the command no longer has: an argparse error naming its key=value replacement."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.update(nargs="*", default=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(
            f"{option_string} is gone, write the key=value override "
            f"{REPLACED_FLAGS[option_string]}; the command reads the checkpoint's config and "
            "takes overrides as `agmm train` does"
        )


def _add_split(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--split",
        default=default,
        help=f"split whose images to read (default: {default or 'the config data.val_split'})",
    )


def _device(name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load_model(args, device):
    """``(model, cfg, meta)`` of ``--checkpoint``; ``cfg`` with the command's overrides."""
    from agmm.models.build import load_model

    model, cfg, meta = load_model(args.checkpoint, map_location=device)
    return model, inference_config(cfg, args.overrides), meta


def inference_config(cfg, overrides):
    """The config a test-time command runs with: the checkpoint's ``cfg`` with ``key=value``
    ``overrides`` of data.*, eval.* and seed, parsed and checked as ``agmm train`` does.

    Another dataset (``data.name=...``) does not inherit the checkpoint's dataset keys
    (``OWN_DATASET_KEYS``: root, dataset_args, eval_resize, weak labels), and another
    ``data.supervision`` not its ``data.weak_label_args``; give them as overrides too.
    """
    requested = parse_overrides(overrides)
    data = requested.get("data") if isinstance(requested.get("data"), dict) else {}
    defaults = DataConfig()
    reset = []
    if data.get("name", cfg.data.name) != cfg.data.name:
        reset = list(OWN_DATASET_KEYS)
    elif data.get("supervision", cfg.data.supervision) != cfg.data.supervision:
        reset = ["weak_label_args"]
    if reset:
        own = {key: getattr(defaults, key) for key in reset}
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **own))
    cfg = apply_overrides(cfg, overrides)  # unknown keys and bad values: as in `agmm train`
    keys = [item.partition("=")[0].strip() for item in overrides]
    fixed = [key for key in keys if key.split(".")[0] not in TEST_TIME_SECTIONS]
    if fixed:
        raise ConfigError(
            f"{fixed[0]}: fixed by the checkpoint; a test-time command overrides only "
            "data.*, eval.* and seed"
        )
    if "max_images" in (requested.get("eval") or {}):
        raise ConfigError(
            "eval.max_images: limits validation during training only; "
            "`agmm eval --max-images N` scores the first N images"
        )
    return cfg


def _run_distributed(run, args: argparse.Namespace) -> int:
    """``run(args, device)`` inside torchrun's process group, if any; single-process otherwise."""
    device = init_distributed(args.device)  # joins torchrun's process group, if any
    try:
        return run(args, device)
    finally:
        cleanup()


def _inference_kwargs(cfg, device, quiet: bool) -> dict:
    """The test protocol (scales, flip, sliding, CRF) and batching of ``cfg.eval``, as
    validation during training passes them to :func:`agmm.eval.inference.evaluate`."""
    return {
        "scales": tuple(cfg.eval.scales),
        "flip": cfg.eval.flip,
        "sliding": cfg.eval.sliding,
        "crf": cfg.eval.crf or None,
        "batch_size": cfg.eval.batch_size,
        "device": device,
        "progress": not quiet,
    }


def _resize(cfg) -> int | None:
    """The shorter image side the model sees: ``data.eval_resize`` (None or 0 = own size)."""
    return cfg.data.eval_resize or None


def _build_dataset(
    args, cfg, meta: dict, *, split: str, supervision: str = "full", own_size=False, **extra
):
    """The config's dataset, with an eval transform resizing to :func:`_resize` (none with
    ``own_size``: samples at each image's own size); checked against the checkpoint's number of
    classes."""
    from agmm.data import build_dataset
    from agmm.data.transforms import EvalTransform

    dataset = build_dataset(
        cfg.data.name,
        root=cfg.data.root,
        split=split,
        supervision=supervision,
        transform=EvalTransform(resize=None if own_size else _resize(cfg)),
        seed=cfg.seed,
        **{**cfg.data.dataset_args, **extra},
    )
    _check_classes(meta, dataset, args.checkpoint)
    return dataset


def _check_classes(meta: dict, dataset, checkpoint: str) -> None:
    if int(meta["num_classes"]) != int(dataset.num_classes):
        raise CheckpointError(
            f"{checkpoint}: checkpoint was trained for {meta['num_classes']} classes but dataset "
            f"{type(dataset).__name__} has {dataset.num_classes}"
        )


# ---------------------------------------------------------------------------------------------
# eval


def _register_eval(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="mIoU and per-class IoU of a checkpoint on a dataset split",
        description="Evaluates the segmenter with the checkpoint's test protocol (cfg.eval: "
        "single-scale, multi-scale + flip, sliding window, dense CRF; what validation used during "
        "training) or key=value overrides of it, prints a per-class table and writes it as JSON or "
        "CSV (by --out's suffix). Multi-GPU: torchrun --nproc_per_node N -m agmm eval ...",
    )
    _add_checkpoint(parser)
    _add_split(parser, default=None)
    parser.add_argument(
        "--predictions",
        metavar="DIR",
        help="score saved label PNGs DIR/<name>.png (from `agmm predict`) instead of the model",
    )
    parser.add_argument("--max-images", type=int, help="evaluate the first N images only")
    parser.add_argument("--out", help="metrics file: .json (default format) or .csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_overrides(
        parser, "--scales", "--flip", "--sliding", "--crf", "--batch-size", "--resize", "--data",
        "--root",
    )  # fmt: skip
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    return _run_distributed(_run_eval, args)


def _run_eval(args: argparse.Namespace, device) -> int:
    from agmm.eval.inference import evaluate
    from agmm.eval.predict import evaluate_saved_predictions

    model, cfg, meta = _load_model(args, device)
    dataset = _build_dataset(args, cfg, meta, split=args.split or cfg.data.val_split)
    if args.max_images is not None and args.max_images < len(dataset):
        from agmm.data.subset import FirstImages

        dataset = FirstImages(dataset, args.max_images)
    if args.predictions:
        result = evaluate_saved_predictions(args.predictions, dataset, progress=not args.quiet)
    else:
        result = evaluate(model, dataset, **_inference_kwargs(cfg, device, args.quiet))
    if not is_main():
        return 0
    print(format_table(result))
    if args.out:
        protocol = _protocol(args, cfg, split=args.split or cfg.data.val_split)
        path = write_metrics(result, args.out, extra=protocol)
        print(f"wrote {path}")
    return 0


def _protocol(args, cfg, *, split: str) -> dict:
    """How a metrics file was made: checkpoint, overrides, data, split, resize and the test
    protocol (``sliding`` normalised to ``{crop: [h, w], stride: [h, w]}`` or None)."""
    from agmm.eval.inference import sliding_options

    return {
        "checkpoint": str(args.checkpoint),
        "overrides": list(args.overrides),
        "data": cfg.data.name,
        "root": cfg.data.root,
        "split": split,
        "resize": _resize(cfg),
        "predictions": getattr(args, "predictions", None),
        "max_images": getattr(args, "max_images", None),
        "scales": list(cfg.eval.scales),
        "flip": cfg.eval.flip,
        "sliding": sliding_options(cfg.eval.sliding),
        "crf": cfg.eval.crf,
    }


def _percent(value) -> str:
    return "   -" if value is None or math.isnan(value) else f"{100 * value:5.1f}"


def format_table(result: dict) -> str:
    """Per-class IoU table (percent; '-' = class absent from masks and predictions) + summary."""
    classes = result["classes"]
    width = max([len(name) for name in classes] + [9])
    lines = [f"{'class':<{width}}  IoU %", "-" * (width + 7)]
    lines += [
        f"{name:<{width}}  {_percent(float(iou))}"
        for name, iou in zip(classes, result["per_class_iou"])
    ]
    lines += [
        "-" * (width + 7),
        f"{'mIoU':<{width}}  {_percent(result['miou'])}",
        f"{'pixel acc':<{width}}  {_percent(result['pixel_acc'])}",
        f"({result['num_images']} images)",
    ]
    return "\n".join(lines)


def metrics_dict(result: dict, extra: dict | None = None) -> dict:
    """JSON-ready metrics: NaN becomes null, arrays become lists."""

    def clean(value):
        value = float(value)
        return None if math.isnan(value) else value

    return {
        "miou": clean(result["miou"]),
        "pixel_acc": clean(result["pixel_acc"]),
        "per_class_iou": {
            name: clean(iou) for name, iou in zip(result["classes"], result["per_class_iou"])
        },
        "num_images": int(result["num_images"]),
        "confusion": [[int(v) for v in row] for row in result["confusion"]],
        **(extra or {}),
    }


def write_metrics(result: dict, path: str | Path, extra: dict | None = None) -> Path:
    """Writes ``path``: CSV (class, iou rows + mIoU, pixel_acc) for ``.csv``, else JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = metrics_dict(result, extra)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["class", "iou"])
            for name, iou in metrics["per_class_iou"].items():
                writer.writerow([name, "" if iou is None else f"{iou:.6f}"])
            for key in ("miou", "pixel_acc"):
                writer.writerow([key, "" if metrics[key] is None else f"{metrics[key]:.6f}"])
    else:
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# predict


def _register_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="colour-palette PNG masks (and probabilities) for images or folders",
        description="Runs the segmenter (never the GMM) on image files and folders (searched "
        "recursively) with the checkpoint's test protocol (cfg.eval; the model sees each image "
        "with its shorter side resized to data.eval_resize) or key=value overrides of it, and "
        "writes OUT/<name>.png palette masks at the image's own size, optionally OUT/<name>.npy "
        "probabilities (K, H, W) float16.",
    )
    _add_checkpoint(parser)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--probs", action="store_true", help="also save probabilities (.npy)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_overrides(parser, "--scales", "--flip", "--sliding", "--crf", "--batch-size", "--resize")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from agmm.eval.predict import predict_images

    device = _device(args.device)
    model, cfg, meta = _load_model(args, device)
    written = predict_images(
        model,
        args.inputs,
        args.out,
        palette=meta["palette"],
        save_probs=args.probs,
        resize=_resize(cfg),
        **_inference_kwargs(cfg, device, args.quiet),
    )
    print(f"wrote {len(written)} masks to {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------
# pseudo-labels


def _register_pseudo_labels(subparsers) -> None:
    parser = subparsers.add_parser(
        "pseudo-labels",
        help="write a model's predictions on the training split as labels for a second stage",
        description="Multi-stage training (MT): writes OUT/<name>.png, the predictions on a "
        "split with the checkpoint's test protocol (cfg.eval: multi-scale, flip, CRF, ...) or "
        "key=value overrides of it, with the exact weak labels (data.supervision, "
        "data.weak_label_dir) kept where they exist. Train the next stage with "
        "data.weak_label_dir=OUT data.supervision=blocks. Prints the quality of the weak labels, "
        "of G and of P against the true masks when the split has them.",
    )
    _add_checkpoint(parser)
    _add_split(parser, default="train")
    parser.add_argument("--out", required=True, help="output folder of the label PNGs")
    parser.add_argument(
        "--no-keep-weak", action="store_true", help="do not copy the weak labels into the output"
    )
    parser.add_argument(
        "--no-quality", action="store_true", help="skip the weak/G/P quality report"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_overrides(parser, *REPLACED_FLAGS)
    parser.set_defaults(func=run_pseudo_labels)


def run_pseudo_labels(args: argparse.Namespace) -> int:
    return _run_distributed(_run_pseudo_labels, args)


def _run_pseudo_labels(args: argparse.Namespace, device) -> int:
    from agmm.eval.pseudo_labels import pseudo_label_quality, write_pseudo_labels
    from agmm.gmm.build import load_gmm_module

    model, cfg, meta = _load_model(args, device)
    dataset = _build_dataset(
        args,
        cfg,
        meta,
        split=args.split,
        supervision=cfg.data.supervision,
        own_size=True,  # labels at each image's own size, for the next stage to read
        weak_label_dir=cfg.data.weak_label_dir,
        weak_label_args=cfg.data.weak_label_args,
    )
    resize = _resize(cfg)
    loss_module = None
    if not args.no_quality:
        loss_module = load_gmm_module(args.checkpoint, cfg, model, device=device)
    # Every rank writes its shard into one staging folder, moved to --out once all is written.
    staging = staging_dir(args.out)
    if is_main():
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
        staging.mkdir(parents=True)
    barrier()
    try:
        result = write_pseudo_labels(
            model,
            dataset,
            staging,
            keep_weak_labels=not args.no_keep_weak,
            palette=meta["palette"],
            resize=resize,
            **_inference_kwargs(cfg, device, args.quiet),
        )
        quality = {}
        if not args.no_quality:
            quality = pseudo_label_quality(
                model,
                dataset,
                loss_module=loss_module,
                device=device,
                progress=not args.quiet,
                resize=resize,
            )
    except BaseException:
        if is_main():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    result["out_dir"] = str(args.out)
    if is_main():
        safe = _nan_to_none(
            {**result, "quality": quality, **_protocol(args, cfg, split=args.split)}
        )
        safe["quality"] = _nan_to_none(quality)
        (staging / "pseudo_labels.json").write_text(json.dumps(safe, indent=2) + "\n")
        publish(staging, args.out)
        print(f"wrote {result['num_images']} pseudo labels to {result['out_dir']}")
        rows = {"pseudo labels written": result["miou"]}
        rows.update(
            {
                "weak labels (labeled pixels)": quality.get("weak_miou"),
                "GMM G_old": quality.get("gmm_old_miou"),
                "GMM G_new": quality.get("gmm_new_miou"),
                "segmenter P": quality.get("seg_miou"),
            }
        )
        print("mIoU against the true masks (- = not available):")
        for name, value in rows.items():
            print(f"  {name:<30} {_percent(value)}")
        if "weak_coverage" in quality:
            print(f"  {'weak label coverage':<30} {_percent(quality['weak_coverage'])}")
    return 0


def _nan_to_none(values: dict) -> dict:
    """JSON has no NaN: float NaN values become None."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


# ---------------------------------------------------------------------------------------------
# export


def _register_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the inference model (logits only) to ONNX or TorchScript",
        description="Exports the segmenter to ONNX (input 'images' (B, 3, H, W) normalised with "
        "ImageNet mean/std, output 'logits' (B, K, H, W); dynamic sizes when possible) or "
        "TorchScript, and checks it against PyTorch (max abs difference < 1e-4).",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by `agmm train`")
    parser.add_argument("--out", required=True, help="output file (model.onnx or model.pt)")
    parser.add_argument("--torchscript", action="store_true", help="TorchScript instead of ONNX")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="tracing size, and the fixed input size if dynamic export fails "
        "(default: the config's crop size)",
    )
    parser.add_argument("--static", action="store_true", help="ONNX with a fixed input size")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from agmm.eval.export import export_onnx, export_torchscript
    from agmm.models.build import load_model

    model, cfg, _ = load_model(args.checkpoint, map_location="cpu")
    size = tuple(args.size) if args.size else (cfg.data.crop_size, cfg.data.crop_size)
    if args.torchscript:
        result = export_torchscript(model, args.out, image_size=size)
    else:
        result = export_onnx(
            model, args.out, image_size=size, dynamic=not args.static, opset=args.opset
        )
    kind = "dynamic" if result["dynamic"] else f"fixed {size[0]}x{size[1]}"
    print(
        f"wrote {result['path']} ({kind} input size; max |difference| to PyTorch "
        f"{result['max_abs_diff']:.2e})"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# report


def _register_report(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="one-page HTML report of a training run (metrics, curves, pictures)",
        description="Gathers RUN_DIR's metrics JSON files, training log (metrics.jsonl -> curves) "
        "and pictures (PNG) into RUN_DIR/report.html (images embedded); with --pictures it first "
        "draws panels (image | weak label | G_old | G_new | prediction | ground truth) and a "
        "t-SNE of pixel embeddings from the run's checkpoint.",
    )
    parser.add_argument("run_dir", help="output folder of `agmm train`")
    parser.add_argument("--out", help="HTML file (default: RUN_DIR/report.html)")
    parser.add_argument(
        "--pictures",
        nargs="?",
        const="last.pt",
        metavar="CHECKPOINT",
        help="first draw panels and a t-SNE from a checkpoint (default: RUN_DIR/last.pt) into "
        "RUN_DIR/pictures/",
    )
    parser.add_argument("--images", type=int, default=4, help="images in the panels (default 4)")
    parser.add_argument("--device", default="auto", help="device for --pictures (default: auto)")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from agmm.viz.report import write_report

    if args.pictures:
        from agmm.viz.run import draw_run_pictures

        checkpoint = Path(args.pictures)
        if not checkpoint.is_absolute() and not checkpoint.exists():
            checkpoint = Path(args.run_dir) / checkpoint
        for path in draw_run_pictures(
            checkpoint,
            Path(args.run_dir) / "pictures",
            num_images=args.images,
            device=_device(args.device),
        ):
            print(f"wrote {path}")
    path = write_report(args.run_dir, out=args.out)
    print(f"wrote {path}")
    return 0
