"""How good are the GMM pseudo labels of a trained run, next to the segmenter? (issue 8 diagnostics)

Loads ``<run>/last.pt`` and ``<run>/config.yaml``, takes training crops (the run's own transform,
fixed seed) and prints the mIoU against the dense masks of

- ``P``: the segmenter's arg-max over all classes;
- ``P|present``: its arg-max over the classes the weak labels show in the image (what G gets to know);
- ``G_old`` / ``G_new``: the arg-max of the E-step GMM and of the GMM after one OEM M-step, for each
  ``--sigma-floor`` and each ``--responsibilities``;

and the medians of sigma, d^2 and G_old over the present classes (first ``--sigma-floor``).

    python bench/gmm_quality.py outputs/bench_camvid/runs/blocks_seg_only_s0 --sigma-floor 0.05 0.7

A run trained with L_seg only still has an (untrained, random) squeeze convolution, so its G shows
what the GMM makes of the segmenter's own decoder features.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="output folder of a training run")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sigma-floor", type=float, nargs="+", default=[0.05])
    parser.add_argument("--responsibilities", nargs="+", default=["soft"], choices=["soft", "hard"])
    parser.add_argument("--posterior", action="store_true")
    args = parser.parse_args()

    from agmm.config import load_config
    from agmm.data.collate import collate_batch
    from agmm.engine.build import build_loss, build_segmenter, build_train_dataset
    from agmm.engine.checkpoint import load_checkpoint
    from agmm.eval.metrics import ConfusionMatrix
    from agmm.eval.pseudo_labels import gmm_to_labels
    from agmm.gmm.functional import pool_labels

    cfg = load_config(args.run / "config.yaml")
    dataset = build_train_dataset(cfg)
    classes = int(dataset.num_classes)
    model = build_segmenter(cfg, classes, pretrained=False)
    loss = build_loss(cfg, model, classes)
    state = load_checkpoint(args.run / "last.pt")
    model.load_state_dict(state["model"])
    loss.load_state_dict(state["loss_module"])
    model.eval()
    loss.posterior = args.posterior

    variants = [(f, r) for f in args.sigma_floor for r in args.responsibilities]
    matrices = {"P": ConfusionMatrix(classes), "P|present": ConfusionMatrix(classes)}
    for floor, resp in variants:
        for which in ("old", "new"):
            matrices[f"G_{which} floor={floor:g} {resp}"] = ConfusionMatrix(classes)
    spread = {"sigma": [], "d2": [], "G": []}  # E-step statistics of the present classes
    torch.manual_seed(0)
    for start in range(0, args.images, args.batch_size):
        indices = range(start, min(start + args.batch_size, args.images, len(dataset)))
        batch = collate_batch([dataset[i] for i in indices])
        masks, weak = batch["mask"], batch["weak_label"]
        with torch.no_grad():
            out = model(batch["image"])
            logits = out["logits"]
            present = pool_labels(weak, classes, (1, 1))[:, :, 0] > 0
            matrices["P"].update(logits.argmax(1), masks)
            restricted = logits.masked_fill(~present[:, :, None, None], float("-inf"))
            matrices["P|present"].update(restricted.argmax(1), masks)
            for index, (floor, resp) in enumerate(variants):
                loss.sigma_floor, loss.responsibilities = floor, resp
                gmm = loss.fit_gmm(out["features"], weak, batch["valid_mask"])
                if index == 0:
                    old, present_k = gmm["old"], gmm["present"]
                    spread["sigma"].append(old.sigma[present_k])
                    # (B, K, N) -> the values of every pixel for the present classes
                    spread["d2"].append(old.sq_dist[present_k])
                    spread["G"].append(old.probs[present_k])
                for which in ("old", "new"):
                    labels = gmm_to_labels(
                        gmm[f"gmm_{which}"], tuple(masks.shape[-2:]), gmm["present"]
                    )
                    matrices[f"G_{which} floor={floor:g} {resp}"].update(labels, masks)
    print(f"{args.run} ({args.images} training crops, posterior={args.posterior}): mIoU %")
    for name, matrix in matrices.items():
        print(f"  {name:32s} {100 * matrix.miou():5.1f}")
    medians = {name: float(torch.cat(values).median()) for name, values in spread.items()}
    print(
        f"E-step, floor={variants[0][0]:g}, present classes: median sigma {medians['sigma']:.3g}, "
        f"median d^2 {medians['d2']:.3g}, median G {medians['G']:.3g}"
    )


if __name__ == "__main__":
    main()
