"""The CamVid benchmark: does AGMM++ work, term by term, on real data? (issues 8, 17)

Trains the CamVid CPU preset (DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0) on CamVid train
and evaluates on CamVid val, with the same model, resolution, schedule and seeds for every row, for
each weak-label type (``points1`` = one click per class, ``points`` = three):

    | supervision | L_seg only | + L_self | + L_weak | + L_con | AGMM++ | AGMM++ paper-exact | full masks |

plus, for points, the "label assignment" (Eq. 18) and "stopped gradients" rows of Table 15 and the
other distance. Writes the CamVid section of docs/BENCHMARKS.md, docs/benchmarks/camvid.json and
plots (Fig. 10: GMM vs segmentation mIoU over training).

Every run is a subprocess (`--child`) whose result is stored in <out>/runs/<id>/bench.json, so an
interrupted benchmark continues where it stopped when started again with the same arguments.

    python bench/camvid.py --root ../shared/data/camvid            # the full table
    python bench/camvid.py --root ../shared/data/camvid --quick    # points + blocks, 1 seed, ~12 min
    python bench/camvid.py --seeds 3 --supervisions points points1 blocks   # a part of the table
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SUPERVISIONS = ("points", "points1", "scribbles", "blocks", "boxes", "tags")
# A supervision is a shipped config plus overrides: points1 = one click per class and image.
SUPERVISION_CONFIGS = {
    "points1": ("camvid/points", ["data.weak_label_args={points_per_class: 1}"]),
}
# Columns of the table: the switches that build AGMM++ up term by term (Tables 12 and 13), the
# library's AGMM++ (its defaults) and the paper-exact GMM (loss.variant=paper, docs/method.md).
COLUMNS = {
    "seg_only": ("L_seg only", ["loss.enabled=false"]),
    "self": ("+ L_self", ["loss.use_weak=false", "loss.use_con=false"]),
    "weak": ("+ L_weak", ["loss.use_con=false"]),
    "agmm": ("+ L_con = AGMM++", []),
    "paper": ("AGMM++ paper-exact", ["loss.variant=paper"]),
}
# Table 15 rows (points only) and the distance that is not the default.
EXTRA_COLUMNS = {
    "assign": ("label assignment (Eq. 18)", ["loss.pseudo_labels=assign"]),
    "stopgrad": ("AGMM++ (SG)", ["loss.stop_gradient=true"]),
    "oem": ("AGMM++ + one OEM M-step", ["loss.oem_steps=1"]),
}
SEEDED_COLUMNS = ("seg_only", "agmm")  # mean ± std over all seeds; the others use the first seed
MIN_GAP = 2.0  # mIoU points between full masks and L_seg only below which "gap closed" is n/a


@dataclass
class Run:
    """One training run: a shipped config, overrides and a seed."""

    run_id: str
    config: str
    overrides: list[str] = field(default_factory=list)
    seed: int = 0


def plan_runs(args) -> list[Run]:
    seeds = list(range(args.seeds))
    runs = [Run(f"full_s{s}", "camvid/full", [], s) for s in seeds]
    for supervision in args.supervisions:
        for column, (_, overrides) in COLUMNS.items():
            if args.columns and column not in args.columns:
                continue
            for seed in seeds if column in SEEDED_COLUMNS else seeds[:1]:
                if args.quick and column not in SEEDED_COLUMNS:
                    continue
                config, extra = SUPERVISION_CONFIGS.get(supervision, (f"camvid/{supervision}", []))
                runs.append(
                    Run(f"{supervision}_{column}_s{seed}", config, [*extra, *overrides], seed)
                )
        if supervision == "points" and not args.quick:
            for column, (_, overrides) in EXTRA_COLUMNS.items():
                if args.columns and column not in args.columns:
                    continue
                runs.append(Run(f"points_{column}_s0", "camvid/points", overrides, 0))
            other = "sqeuclid" if args.default_distance == "l1" else "l1"
            if args.columns and "distance" not in args.columns:
                continue
            runs.append(
                Run(f"points_agmm_{other}_s0", "camvid/points", [f"loss.distance={other}"], 0)
            )
    return runs


def common_overrides(args, run: Run, run_dir: Path) -> list[str]:
    """The settings every row shares (same model, resolution, schedule), then the row's own."""
    overrides = [
        f"data.root={args.root}",
        f"train.steps={args.steps}",
        f"train.val_every={max(args.steps // args.curve_points, 1)}",
        f"train.checkpoint_every={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"data.crop_size={args.crop}",
        f"model.model_args={{decoder_channels: {args.width}, aspp_channels: {args.width}}}",
        f"data.num_workers={args.workers}",
        "train.progress_bar=false",
        "train.tensorboard=false",
        f"loss.distance={args.default_distance}",
        f"seed={run.seed}",
        f"output_dir={run_dir}",
        *args.override,
    ]
    if run.config == "camvid/boxes":  # GrabCut seeds, computed by the first boxes run, then cached
        overrides.append(f"data.box_seed_cache={args.out / 'box_seed_cache'}")
    if run.config == "camvid/tags":  # classification-only warm-up: the preset's quarter of the run
        overrides.append(f"loss.cam_warmup_steps={args.steps // 4}")
    return overrides + run.overrides


def run_child(payload: dict) -> dict:
    """Inside the subprocess: train one run and record its metrics, time and peak memory."""
    from agmm.config import load_config
    from agmm.engine.train import train

    cfg = load_config(payload["config"], payload["overrides"])
    start = time.perf_counter()
    result = train(cfg, resume="auto")
    result["wall_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    curve = []
    metrics = Path(cfg.output_dir) / "metrics.jsonl"
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if "pseudo/gmm_miou" in record or "val/miou" in record:
            curve.append(record)
    result["curve"] = curve
    return result


def execute(args, runs: list[Run]) -> dict[str, dict]:
    """Run what is not done yet, ``args.jobs`` at a time, each with ``args.threads`` torch threads."""
    results, todo = {}, []
    for run in runs:
        done = args.out / "runs" / run.run_id / "bench.json"
        if done.exists():
            results[run.run_id] = json.loads(done.read_text())
        else:
            todo.append(run)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    def one(run: Run) -> tuple[str, dict]:
        run_dir = args.out / "runs" / run.run_id
        payload = {"config": run.config, "overrides": common_overrides(args, run, run_dir)}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(payload)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise RuntimeError(f"run {run.run_id} failed (exit {proc.returncode})")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        (run_dir / "bench.json").write_text(json.dumps(result, indent=1))
        print(
            f"{run.run_id}: val mIoU {100 * result.get('val/miou', float('nan')):.1f}  "
            f"({time.perf_counter() - start:.0f} s, {result['images_per_s']:.1f} img/s)",
            flush=True,
        )
        return run.run_id, result

    print(
        f"{len(results)} runs already done, {len(todo)} to run, {args.jobs} at a time", flush=True
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for run_id, result in pool.map(one, todo):
            results[run_id] = result
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(args, runs: list[Run], results: dict[str, dict]) -> dict:
    def scores(prefix: str) -> list[float]:
        pattern = re.compile(re.escape(prefix) + r"_s\d+")  # not points_agmm_sqeuclid_s0
        return [100 * results[r.run_id]["val/miou"] for r in runs if pattern.fullmatch(r.run_id)]

    full_scores = scores("full")
    full = mean_std(full_scores)
    table = {}
    for supervision in args.supervisions:
        row = {}
        for column in [*COLUMNS, *EXTRA_COLUMNS, "agmm_sqeuclid", "agmm_l1"]:
            values = scores(f"{supervision}_{column}")
            if values:
                mean, std = mean_std(values)
                row[column] = {"mean": mean, "std": std, "n": len(values), "first": values[0]}
        base, best = row.get("seg_only"), row.get("agmm")
        # The ratio means nothing when full masks are not clearly above L_seg only (too few steps).
        if base and best and full[0] - base["mean"] >= MIN_GAP:
            row["gap_closed"] = (best["mean"] - base["mean"]) / (full[0] - base["mean"])
        if base and best:
            row["difference"] = difference(base, best)
        table[supervision] = row
    summary_full = {"mean": full[0], "std": full[1], "n": len(full_scores)}
    if full_scores:
        summary_full["first"] = full_scores[0]
    return {"full": summary_full, "table": table}


def difference(base: dict, best: dict) -> dict:
    """AGMM++ − L_seg only, against the issue's target: more than 2 pooled seed std's above."""
    diff = best["mean"] - base["mean"]
    pooled = ((base["std"] ** 2 + best["std"] ** 2) / 2) ** 0.5
    seeds = min(base["n"], best["n"])
    if seeds < 2:
        verdict = "1 seed"
    elif diff > 2 * pooled:
        verdict = "better by > 2 sd"
    elif diff < -2 * pooled:
        verdict = "worse by > 2 sd"
    else:
        verdict = "within 2 sd"
    return {"mean": diff, "pooled_std": pooled, "verdict": verdict}


def fmt(cell: dict | None) -> str:
    if not cell:
        return "–"
    if cell["n"] == 1:
        return f"{cell['mean']:.1f}"
    # the first seed too: the one-seed columns beside it come from that seed
    first = f" (s0 {cell['first']:.1f})" if "first" in cell else ""
    return f"{cell['mean']:.1f} ± {cell['std']:.1f}{first}"


def efficiency(results: dict[str, dict], supervision: str) -> list[str]:
    lines = []
    for column in ("seg_only", "agmm"):
        run = results.get(f"{supervision}_{column}_s0")
        if run:
            lines.append(
                f"| {COLUMNS[column][0]} | {run['images_per_s']:.2f} | {run['peak_rss_mb']:.0f} |"
            )
    return lines


def plot_curves(args, runs: list[Run], results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(args.supervisions), figsize=(4 * len(args.supervisions), 3.2), squeeze=False
    )
    for ax, supervision in zip(axes[0], args.supervisions):
        for column, style in (("agmm", "-"), ("seg_only", "--")):
            run = results.get(f"{supervision}_{column}_s0")
            if not run:
                continue
            # one point per step: a resumed run logs the steps after its last checkpoint twice
            by_step = {r["step"]: r for r in run["curve"] if "pseudo/seg_miou" in r}
            points = [by_step[step] for step in sorted(by_step)]
            steps = [r["step"] for r in points]
            if column == "agmm":
                ax.plot(
                    steps,
                    [100 * r.get("pseudo/gmm_miou", float("nan")) for r in points],
                    style,
                    label="GMM G (AGMM++)",
                )
            ax.plot(
                steps,
                [100 * r.get("pseudo/seg_miou", float("nan")) for r in points],
                style,
                label=f"segmenter P ({COLUMNS[column][0]})",
            )
        ax.set_title(supervision)
        ax.set_xlabel("step")
        ax.set_ylabel("train mIoU (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def protocol(args) -> dict:
    """What every run shares, read from the preset after ``--override`` (recorded in the JSON)."""
    from agmm.config import load_config
    from agmm.engine.train import cpu_has_native_bf16

    cfg = load_config("camvid/points", list(args.override))
    amp = cfg.train.amp
    precision = "bf16" if amp == "bf16" or (amp == "auto" and cpu_has_native_bf16()) else "fp32"
    return {
        "backbone": cfg.model.backbone,
        "weights": cfg.model.pretrained
        if isinstance(cfg.model.pretrained, str)
        else ("timm ImageNet" if cfg.model.pretrained else "random init"),
        "decoder_channels": args.width,
        "crop": args.crop,
        "scale_range": list(cfg.data.scale_range),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "seeds": args.seeds,
        "precision": (f"{precision} autocast on CPU" if precision == "bf16" else "float32")
        + (", channels_last" if cfg.train.channels_last else ""),
        "lr": cfg.train.lr,
        "head_lr_mult": cfg.train.head_lr_mult,
        "seg_reduction": cfg.loss.seg_reduction,
        "distance": args.default_distance,
        "gmm": {
            key: getattr(cfg.loss, key)
            for key in ("sigma_prior", "class_prior_momentum", "self_target", "oem_steps")
        },
    }


def seg_reduction_text(setting: dict) -> str:
    """How the runs average L_seg (``setting``: the :func:`protocol` of the benchmark)."""
    if setting["seg_reduction"] == "class":
        return "class-balanced L_seg (`loss.seg_reduction=class`, the CamVid preset)"
    return "L_seg averaged over pixels (`loss.seg_reduction=pixel`)"


def portable(argv: list[str]) -> list[str]:
    """The command line without this machine's absolute paths (they stay out of committed files)."""
    out = []
    for token in argv:
        if Path(token).is_absolute() or "=/" in token:
            token = token.split("=", 1)[0] + "=<path>" if "=" in token else "<path>"
        out.append(token)
    return out


def without_paths(result: dict) -> dict:
    """A run's result minus the absolute paths of its checkpoint and output folder."""
    return {k: v for k, v in result.items() if k not in ("checkpoint", "output_dir")}


def write_report(args, runs: list[Run], results: dict[str, dict], summary: dict) -> None:
    docs = REPO / "docs"
    pictures = args.out if args.no_docs else docs / "benchmarks"
    pictures.mkdir(parents=True, exist_ok=True)
    curve_png = pictures / "camvid_fig10.png"
    plot_curves(args, runs, results, curve_png)
    first = results[runs[0].run_id]
    setting = protocol(args)
    header = [
        "supervision",
        *[label for label, _ in COLUMNS.values()],
        "full masks",
        "gap closed",
        "AGMM++ − L_seg only",
    ]
    lines = [
        f"Command: `python bench/camvid.py {' '.join(portable(args.argv))}` — {args.steps} steps, "
        f"batch {args.batch_size}, crop {args.crop}, DeepLabV3+ ({args.width}-channel ASPP/decoder) "
        f"on {setting['backbone']} ({setting['weights']} weights), {setting['precision']}, "
        f"{seg_reduction_text(setting)}, default distance `{args.default_distance}`, GMM "
        + ", ".join(f"`{k}={v}`" for k, v in setting["gmm"].items())
        + f"; seeds: {args.seeds} for L_seg only / AGMM++ / full masks "
        f"(mean ± std), the first seed for the other columns. val mIoU (%) on CamVid val (101 images).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for supervision, row in summary["table"].items():
        cells = [fmt(row.get(column)) for column in COLUMNS]
        gap = row.get("gap_closed")
        gap_text = f"{100 * gap:.0f} %" if gap is not None else f"n/a (full − L_seg < {MIN_GAP:g})"
        diff = row.get("difference")
        diff_text = f"{diff['mean']:+.1f} ({diff['verdict']})" if diff else "–"
        lines.append(
            f"| {supervision} | "
            + " | ".join(cells)
            + f" | {fmt(summary['full'])} | {gap_text} | {diff_text} |"
        )
    extra = summary["table"].get("points", {})
    if any(key in extra for key in (*EXTRA_COLUMNS, "agmm_sqeuclid", "agmm_l1")):
        lines += [
            "",
            "Points, Table 15 and the distance:",
            "",
            "| variant | val mIoU (%) |",
            "|---|---|",
        ]
        lines.append(f"| AGMM++ (`{args.default_distance}`) | {fmt(extra.get('agmm'))} |")
        for key, (label, _) in EXTRA_COLUMNS.items():
            if key in extra:
                lines.append(f"| {label} | {fmt(extra[key])} |")
        for key in ("agmm_sqeuclid", "agmm_l1"):
            if key in extra:
                lines.append(f"| AGMM++ (`{key.split('_')[1]}`) | {fmt(extra[key])} |")
    tags_run = results.get("tags_agmm_s0") or results.get("tags_seg_only_s0")
    seeded = [r for r in (tags_run or {}).get("curve", []) if "seeds/precision_miou" in r]
    if seeded:
        lines += [
            "",
            f"Tags: online CAM seeds after a {args.steps // 4}-step classification warm-up, at step "
            f"{seeded[-1]['step']}: precision {100 * seeded[-1]['seeds/precision_miou']:.1f} % mIoU on "
            f"the seeded pixels, coverage {100 * seeded[-1]['seeds/coverage']:.1f} % of the pixels.",
        ]
    lines += [
        "",
        "Training cost on this machine (points, seed 0; images/s include data loading and are only "
        f"comparable when runs did not share the CPU: this benchmark ran {args.jobs} at a time; peak RSS "
        "of the whole training process). The clean step-time comparison is in the AGMMLoss section.",
        "",
        "| run | images/s | peak RSS (MB) |",
        "|---|---|---|",
        *efficiency(results, "points"),
        "",
        f"GMM pseudo labels vs segmentation on the training batches (paper Fig. 10): "
        f"![Fig. 10](benchmarks/{curve_png.name})",
        "",
        f"Total benchmark time: {sum(r['wall_s'] for r in results.values()) / 60:.0f} min of training "
        f"on {os.cpu_count()} CPU cores ({len(results)} runs; first run {first['wall_s']:.0f} s).",
    ]
    section = "\n".join(lines)
    (args.out / "report.md").write_text(section + "\n")
    if args.no_docs:  # an experiment: keep docs/ as the committed benchmark left it
        print(section)
        return
    (docs / "benchmarks" / "camvid.json").write_text(
        json.dumps(
            {
                "args": portable(args.argv),
                "protocol": setting,
                "summary": summary,
                "runs": {run_id: without_paths(r) for run_id, r in results.items()},
            },
            indent=1,
        )
    )
    bench_md = docs / "BENCHMARKS.md"
    text = bench_md.read_text() if bench_md.exists() else "# Benchmarks\n"
    start, end = "<!-- camvid:start -->", "<!-- camvid:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## CamVid: AGMM++ term by term\n\n" + block + "\n"
    bench_md.write_text(text)
    print(section)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("AGMM_CAMVID", REPO.parent / "shared/data/camvid")),
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_camvid")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one seed, L_seg only / AGMM++ / full only, fewer steps",
    )
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--width", type=int, default=128, help="ASPP and decoder channels")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--curve-points", type=int, default=5)
    parser.add_argument(
        "--supervisions",
        nargs="+",
        default=None,
        choices=SUPERVISIONS,
        help="default: all five; with --quick: points and blocks (5 runs, under 15 min)",
    )
    parser.add_argument(
        "--columns",
        nargs="+",
        default=None,
        choices=[*COLUMNS, *EXTRA_COLUMNS, "distance"],
        help="run only these columns (default: all; the table shows '–' for the others)",
    )
    parser.add_argument("--default-distance", default="sqeuclid", choices=["l1", "sqeuclid"])
    parser.add_argument("--override", nargs="*", default=[], help="extra key=value for every run")
    parser.add_argument(
        "--no-docs", action="store_true", help="write the report to <out>/report.md only, not docs/"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.steps = args.steps or 300
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.supervisions = args.supervisions or (
        ["points", "blocks"] if args.quick else list(SUPERVISIONS)
    )
    args.root = args.root.resolve()
    args.out = args.out.resolve()
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    runs = plan_runs(args)
    print(f"{len(runs)} runs planned into {args.out}", flush=True)
    results = execute(args, runs)
    write_report(args, runs, results, summarise(args, runs, results))


if __name__ == "__main__":
    main()
