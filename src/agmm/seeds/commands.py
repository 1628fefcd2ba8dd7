"""`agmm seeds`: write the seeds of image tags (CAMs of a trained model) or boxes (GrabCut) as PNGs."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
import yaml

from agmm.data.subset import FirstImages
from agmm.errors import ConfigError
from agmm.outputs import staged_dir
from agmm.seeds.box_cache import compute_box_seeds
from agmm.seeds.cam import TOCO_HIGH, TOCO_LOW
from agmm.seeds.cam_export import compute_cam_seeds


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "seeds",
        help="turn image tags or boxes into seed label PNGs (and measure them against masks)",
        description=(
            "Write one seed PNG per image (class ids, 255 = unlabeled) to --out, usable as "
            "--weak-label-dir for training. With dense masks, print the seeds' precision (mIoU on "
            "the seeded pixels) and coverage per class."
        ),
    )
    parser.add_argument("--data", required=True, help="dataset name (camvid, voc, coco, ...)")
    parser.add_argument("--root", required=True, type=Path, help="dataset folder")
    parser.add_argument("--split", default="train", help="split to seed (default: train)")
    parser.add_argument(
        "--supervision",
        required=True,
        choices=("tags", "boxes"),
        help="tags: CAM seeds from a --checkpoint with a classification head; boxes: GrabCut "
        "seeds inside each box",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="folder for the seed PNGs (filled only when every image is seeded)",
    )
    parser.add_argument("--max-images", type=int, default=None, help="seed the first N images only")
    parser.add_argument(
        "--weak-label-dir",
        type=Path,
        default=None,
        help="boxes/tags files of the dataset (default: simulated from the masks)",
    )
    parser.add_argument(
        "--dataset-args",
        type=_yaml_mapping,
        default={},
        help="extra dataset keywords as YAML, e.g. '{num_classes: 4}' (synthetic)",
    )
    parser.add_argument(
        "--weak-label-args",
        type=_yaml_mapping,
        default=None,
        help="simulator parameters for boxes/tags as YAML, e.g. '{min_pixels: 50}'",
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="tags: a checkpoint of a model with cls_head"
    )
    parser.add_argument("--high", type=float, default=TOCO_HIGH, help="tags: foreground threshold")
    parser.add_argument("--low", type=float, default=TOCO_LOW, help="tags: background threshold")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="tags, no-background datasets: lead of the winning class",
    )
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0],
        help="tags: input scales whose CAMs are summed (ToCo: 1.0 0.5 1.5)",
    )
    parser.add_argument("--flip", action="store_true", help="tags: add mirrored CAMs")
    parser.add_argument("--refine", choices=("crf",), default=None, help="tags: refine CAMs first")
    parser.add_argument("--device", default=None, help="tags: cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument(
        "--method",
        choices=("grabcut", "shrink"),
        default="grabcut",
        help="boxes: GrabCut, or the shrunk box interior",
    )
    parser.add_argument("--iterations", type=int, default=5, help="boxes: GrabCut iterations")
    parser.add_argument("--shrink-margin", type=float, default=0.15, help="boxes: shrink margin")
    parser.add_argument(
        "--context",
        type=float,
        default=1.0,
        help="boxes: GrabCut sees the box plus this many box sizes around it (<0: whole image)",
    )
    parser.add_argument(
        "--min-foreground",
        type=float,
        default=0.1,
        help="boxes: below this fraction of GrabCut foreground, use the shrunk box instead",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=40_000,
        help="boxes: GrabCut regions larger than this are downscaled (0: never)",
    )
    parser.add_argument("--workers", type=int, default=1, help="boxes: parallel processes")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="boxes: seed cache (default: <out>/.cache)"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run_seeds)


def _yaml_mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"not YAML: {error}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{key: value}}', got {text!r}")
    return value


def run_seeds(args: argparse.Namespace) -> int:
    from agmm.data import build_dataset

    dataset = build_dataset(
        args.data,
        root=args.root,
        split=args.split,
        supervision=args.supervision,
        weak_label_dir=args.weak_label_dir,
        weak_label_args=args.weak_label_args,
        **args.dataset_args,
    )
    if args.max_images is not None and args.max_images < len(dataset):
        dataset = FirstImages(dataset, args.max_images)
    cache_dir = args.cache_dir or args.out / ".cache"
    made = [path for path in (args.out, cache_dir) if not path.exists()]
    try:
        with staged_dir(args.out) as staging:
            run = _write_seeds(args, dataset, staging, cache_dir)
    except BaseException as error:
        if args.supervision == "boxes" and cache_dir.is_dir() and any(cache_dir.iterdir()):
            error.add_note(
                f"{cache_dir} keeps the seeds computed so far: the same command reuses them"
            )
        else:
            for path in reversed(made):  # the cache folder, then --out if this run made it
                shutil.rmtree(path, ignore_errors=True)
        raise
    if run.quality is not None:
        print(run.quality.format_table(list(dataset.classes)))
    else:
        print("no dense masks in this split: seed precision not measured")
    return 0


def _write_seeds(args: argparse.Namespace, dataset, out_dir: Path, cache_dir: Path):
    """Box or CAM seeds of ``dataset`` written to ``out_dir``; prints what was done."""
    classes = list(dataset.classes)
    if args.supervision == "boxes":
        run = compute_box_seeds(
            dataset,
            cache_dir,
            out_dir=out_dir,
            workers=args.workers,
            method=args.method,
            iterations=args.iterations,
            shrink_margin=args.shrink_margin,
            context=None if args.context < 0 else args.context,
            min_foreground=args.min_foreground,
            max_pixels=args.max_pixels or None,
            progress=not args.no_progress,
        )
        print(
            f"wrote {len(run.paths)} box seed maps to {args.out} ({run.computed} computed, "
            f"{run.reused} from the cache, {run.recomputed_corrupt} corrupt entries recomputed)"
        )
        if run.no_boxes:
            print(f"{len(run.no_boxes)} images have no box (seeded as background/ignore only)")
    else:
        if args.checkpoint is None:
            raise ConfigError("--checkpoint: tags seeds need a model trained with cls_head=true")

        from agmm.models.build import load_model

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, _, _ = load_model(args.checkpoint, map_location=device, num_classes=len(classes))
        run = compute_cam_seeds(
            model,
            dataset,
            out_dir,
            high=args.high,
            low=args.low,
            margin=args.margin,
            refine=args.refine,
            scales=tuple(args.scales),
            flip=args.flip,
            device=device,
            progress=not args.no_progress,
        )
        print(f"wrote {len(run.paths)} CAM seed maps to {args.out}")
        if run.untagged:
            print(f"skipped {len(run.untagged)} images without tags (all 255): {run.untagged[:5]}")
    return run
