"""Pictures of a trained run from its checkpoint: panels (Fig. 7-8) and t-SNE (Fig. 11)."""

from __future__ import annotations

from pathlib import Path

import torch

from agmm.data import build_dataset
from agmm.data.transforms import EvalTransform
from agmm.gmm.build import load_gmm_module
from agmm.models.build import load_model
from agmm.viz.panels import panel_rows, save_panels, spread_indices
from agmm.viz.tsne import plot_tsne


@torch.no_grad()
def draw_run_pictures(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    num_images: int = 4,
    split: str | None = None,
    tsne_points: int = 2000,
    device=None,
    num_threads: int | None = None,
) -> list[Path]:
    """Writes ``out_dir/panels.png`` and ``out_dir/tsne.png`` for a checkpoint; returns the paths.

    Uses the first ``num_images`` images of ``split`` (default: the config's training split, with
    its weak labels, un-augmented) of the checkpoint's dataset. The panels show image | weak label
    | G_old | G_new | prediction | ground truth, G refitted with the run's trained GMM module; the
    t-SNE shows the GMM embeddings (the segmenter's decoder features for a run without the GMM)
    of pixels coloured by their true class (skipped when the split has no masks).
    """
    device = torch.device(device or "cpu")
    model, cfg, meta = load_model(checkpoint, map_location=device)
    loss_module = load_gmm_module(checkpoint, cfg, model, device=device)
    dataset = build_dataset(
        cfg.data.name,
        root=cfg.data.root,
        split=split or cfg.data.train_split,
        supervision=cfg.data.supervision,
        weak_label_dir=cfg.data.weak_label_dir,
        weak_label_args=cfg.data.weak_label_args,
        transform=EvalTransform(resize=cfg.data.eval_resize),
        seed=cfg.seed,
        **cfg.data.dataset_args,
    )
    indices = spread_indices(num_images, len(dataset))
    out_dir = Path(out_dir)
    rows = panel_rows(model, dataset, indices, loss_module=loss_module, device=device)
    written = [
        save_panels(out_dir / "panels.png", rows, palette=meta["palette"], classes=meta["classes"])
    ]
    masks = [dataset[i]["mask"] for i in indices]
    if any(bool((mask != 255).any()) for mask in masks):
        features, labels = [], []
        for index, mask in zip(indices, masks):
            image = dataset[index]["image"][None].to(device)
            feats = model(image)["features"]
            if loss_module is not None:
                feats = loss_module.squeeze(feats)
            features.append(feats.flatten(2).cpu())  # (1, C, h*w): sizes may differ
            size = feats.shape[-2:]
            small = torch.nn.functional.interpolate(mask[None, None].float(), size=size)
            labels.append(small.long().flatten(1))
        written.append(
            plot_tsne(
                torch.cat(features, dim=2)[..., None],  # (1, C, N, 1)
                torch.cat(labels, dim=1)[..., None],  # (1, N, 1)
                out_dir / "tsne.png",
                palette=meta["palette"],
                classes=meta["classes"],
                max_points=tsne_points,
                num_threads=num_threads,
                title="t-SNE of pixel embeddings, coloured by true class",
            )
        )
    return written
