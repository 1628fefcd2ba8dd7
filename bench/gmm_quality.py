"""The G-quality harness: how good are a trained run's GMM pseudo labels, next to its segmenter?

For one or several training runs (folders with ``config.yaml`` and ``last.pt``; typically one
setting trained with different seeds), with no training, prints the arg-max mIoU (%) against the
dense masks of

- ``P``: the segmenter over all classes;
- ``P|clicked``: the segmenter over the classes the weak labels show in the crop / image;
- ``G_old``: the E-step GMM (fitted from the weak labels), for each ``--sigma-prior``;
- ``G_new oem=k``: the GMM after k online-EM M-steps, for each ``--oem-steps`` k > 0;
- ``... x P``: L_self's ``gmm_x_p`` target, ``functional.product_target`` of that GMM and the
  segmenter's P area-pooled to the feature grid, over the GMM's present classes;

each on (a) training crops (the run's own train transform, torch seed 0, the same crops for every
run) and (b) full training images at the run's ``data.eval_resize`` (the train split with its weak
labels, no crop). With several runs a cell is ``mean ± std`` over runs. A second table gives the
E-step medians of sigma, d^2 and G_old over the present classes (first ``--sigma-prior``).

    python bench/gmm_quality.py outputs/bench_camvid/runs/points_agmm_s{0,1,2} --images 48

The GMM uses each run's trained squeeze convolution and its other loss settings (distance,
sigma_floor, responsibilities, posterior, class prior); only sigma_prior and oem_steps vary. A run
trained with L_seg only still has an (untrained, random) squeeze convolution, so its G shows what
the GMM makes of the segmenter's own decoder features.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from agmm.config import Config, load_config
from agmm.data.collate import IGNORE_INDEX, collate_batch
from agmm.data.transforms import EvalTransform
from agmm.engine.build import build_train_dataset
from agmm.eval.metrics import ConfusionMatrix
from agmm.eval.pseudo_labels import gmm_to_labels
from agmm.gmm.build import build_loss
from agmm.gmm.functional import pool_labels, product_target
from agmm.gmm.loss import AGMMLoss
from agmm.models.build import build_segmenter
from agmm.runtime.checkpoint import load_checkpoint, load_state_dict_checked

VIEWS = {"crops": "training crops", "full": "full training images"}
SPREAD_NAMES = ("sigma", "d2", "G_old")


def row_names(sigma_priors: Sequence[float], oem_steps: Sequence[int]) -> list[str]:
    """The table's rows, in order: P, P|clicked, then per sigma prior G and G x P per OEM step."""
    rows = ["P", "P|clicked"]
    for sigma_prior in sigma_priors:
        for steps in oem_steps:
            gmm = "G_old" if steps == 0 else f"G_new oem={steps}"
            rows += [f"{gmm} sigma_prior={sigma_prior:g}", f"{gmm} x P sigma_prior={sigma_prior:g}"]
    return rows


def load_run(run: Path, device: torch.device) -> tuple[Config, nn.Module, AGMMLoss, int]:
    """The run's config, segmenter and GMM module (eval mode), built untrained and then loaded."""
    cfg = load_config(run / "config.yaml")
    state = load_checkpoint(run / "last.pt")
    num_classes = int(state["num_classes"])
    model = build_segmenter(cfg, num_classes, pretrained=False)
    load_state_dict_checked(model, state["model"], run / "last.pt", "model")
    gmm_module = build_loss(cfg, model, num_classes)
    if state.get("loss_module"):
        load_state_dict_checked(gmm_module, state["loss_module"], run / "last.pt", "GMM module")
    return cfg, model.to(device).eval(), gmm_module.to(device).eval(), num_classes


def view_datasets(cfg: Config) -> dict[str, Dataset]:
    """The training split twice, with its weak labels: random training crops and whole images.

    Whole images: the training dataset with the validation transform (``data.eval_resize``), so
    the images and weak labels are exactly the ones training crops are cut from.
    """
    full = build_train_dataset(cfg)
    full.transform = EvalTransform(resize=cfg.data.eval_resize)
    return {"crops": build_train_dataset(cfg), "full": full}


def batches(dataset: Dataset, images: int, batch_size: int, device) -> Iterator[dict]:
    """The first ``images`` samples, collated; torch seed 0 so every run gets the same crops."""
    torch.manual_seed(0)
    count = min(images, len(dataset))
    for start in range(0, count, batch_size):
        batch = collate_batch([dataset[i] for i in range(start, min(start + batch_size, count))])
        yield {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def restricted_argmax(scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Arg-max of (B, K, H, W) scores over ``classes`` (B, K); 255 in images without any class."""
    labels = scores.masked_fill(~classes[:, :, None, None], float("-inf")).argmax(dim=1)
    return labels.masked_fill(~classes.any(dim=1)[:, None, None], IGNORE_INDEX)


def pooled_probs(
    logits: torch.Tensor, valid_mask: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Softmax P (B, K, H, W) area-averaged over each feature cell, padding excluded: (B, K, h, w).

    The same pooling as AGMMLoss's L_self on the feature grid (``self_resolution="feature"``).
    """
    weights = valid_mask[:, None].to(logits.dtype)
    pooled = F.adaptive_avg_pool2d(torch.softmax(logits, dim=1) * weights, size)
    return pooled / F.adaptive_avg_pool2d(weights, size).clamp_min(1e-6)


@torch.no_grad()
def measure_view(
    model: nn.Module,
    gmm_module: AGMMLoss,
    batch_iter: Iterator[dict],
    num_classes: int,
    *,
    sigma_priors: Sequence[float],
    oem_steps: Sequence[int],
) -> tuple[dict[str, float], dict[str, float]]:
    """mIoU (%) of every row on these batches, and the E-step medians (first sigma prior)."""
    matrices = {row: ConfusionMatrix(num_classes) for row in row_names(sigma_priors, oem_steps)}
    spread = {name: [] for name in SPREAD_NAMES}
    for batch in batch_iter:
        masks, weak_labels, valid_mask = batch["mask"], batch["weak_label"], batch["valid_mask"]
        size = tuple(masks.shape[-2:])
        out = model(batch["image"])
        logits = out["logits"].float()
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        clicked = pool_labels(weak_labels, num_classes, (1, 1))[:, :, 0] > 0  # (B, K)
        matrices["P"].update(logits.argmax(dim=1), masks)
        matrices["P|clicked"].update(restricted_argmax(logits, clicked), masks)
        probs_on_grid = pooled_probs(logits, valid_mask, tuple(out["features"].shape[-2:]))
        for sigma_prior in sigma_priors:
            gmm_module.sigma_prior = sigma_prior
            for steps in oem_steps:
                gmm_module.oem_steps = steps
                gmm = gmm_module.fit_gmm(
                    out["features"], weak_labels, valid_mask, image_classes=batch["tags"]
                )
                present, params, g = gmm["present"], gmm["new"], gmm["gmm_new"]  # new = old at 0
                target = product_target(
                    params.sq_dist, params.sigma, present, probs_on_grid.flatten(2)
                ).view_as(g)
                name = "G_old" if steps == 0 else f"G_new oem={steps}"
                suffix = f"sigma_prior={sigma_prior:g}"
                matrices[f"{name} {suffix}"].update(gmm_to_labels(g, size, present), masks)
                matrices[f"{name} x P {suffix}"].update(gmm_to_labels(target, size, present), masks)
            if sigma_prior == sigma_priors[0]:
                old = gmm["old"]
                spread["sigma"].append(old.sigma[old.present])
                spread["d2"].append(old.sq_dist[old.present].flatten())  # every cell, present k
                spread["G_old"].append(old.probs[old.present].flatten())
    miou = {row: 100 * matrix.miou() for row, matrix in matrices.items()}
    medians = {name: float(torch.cat(values).median()) for name, values in spread.items()}
    return miou, medians


def measure_run(
    run: Path,
    *,
    images: int,
    batch_size: int,
    sigma_priors: Sequence[float],
    oem_steps: Sequence[int],
    device: str = "cpu",
) -> dict[str, dict]:
    """``{view: {"miou": {row: %}, "medians": {name: value}}}`` for one run (see ``VIEWS``)."""
    device = torch.device(device)
    cfg, model, gmm_module, num_classes = load_run(run, device)
    results = {}
    for view, dataset in view_datasets(cfg).items():
        miou, medians = measure_view(
            model,
            gmm_module,
            batches(dataset, images, batch_size, device),
            num_classes,
            sigma_priors=sigma_priors,
            oem_steps=oem_steps,
        )
        results[view] = {"miou": miou, "medians": medians}
    return results


def mean_std(values: Sequence[float], spec: str = ".1f") -> str:
    """``12.3`` for one value, ``12.3 ± 0.4`` (sample std) for several."""
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def format_tables(per_run: Sequence[dict[str, dict]], rows: Sequence[str], images: int) -> str:
    """Markdown: the mIoU table (rows x views) and the E-step medians table, over runs."""
    header = [f"{VIEWS[view]} ({images})" for view in VIEWS]
    lines = ["| mIoU % | " + " | ".join(header) + " |", "|---" * (len(VIEWS) + 1) + "|"]
    for row in rows:
        cells = [mean_std([run[view]["miou"][row] for run in per_run]) for view in VIEWS]
        label = row.replace("|", r"\|")  # a bare | would start a new markdown column
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| E-step medians, present classes | " + " | ".join(SPREAD_NAMES) + " |"]
    lines.append("|---" * (len(SPREAD_NAMES) + 1) + "|")
    for view in VIEWS:
        cells = [
            mean_std([run[view]["medians"][name] for run in per_run], spec=".3g")
            for name in SPREAD_NAMES
        ]
        lines.append(f"| {VIEWS[view]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quality_report(
    runs: Sequence[Path],
    *,
    images: int = 48,
    batch_size: int = 8,
    sigma_priors: Sequence[float] = (0.0, 4.0),
    oem_steps: Sequence[int] = (0, 1),
    device: str = "cpu",
) -> tuple[str, list[dict[str, dict]]]:
    """The markdown tables over ``runs`` and each run's :func:`measure_run` result."""
    oem_steps = sorted({0, *oem_steps})  # G_old (the E-step) is always a row
    per_run = [
        measure_run(
            Path(run),
            images=images,
            batch_size=batch_size,
            sigma_priors=sigma_priors,
            oem_steps=oem_steps,
            device=device,
        )
        for run in runs
    ]
    return format_tables(per_run, row_names(sigma_priors, oem_steps), images), per_run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="output folders of training runs")
    parser.add_argument("--images", type=int, default=48, help="images per view")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sigma-prior", type=float, nargs="+", default=[0.0, 4.0])
    parser.add_argument("--oem-steps", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    table, _ = quality_report(
        args.runs,
        images=args.images,
        batch_size=args.batch_size,
        sigma_priors=args.sigma_prior,
        oem_steps=args.oem_steps,
        device=args.device,
    )
    print(f"{len(args.runs)} run(s): {', '.join(str(run) for run in args.runs)}\n")
    print(table)


if __name__ == "__main__":
    main()
