"""The documented multi-stage loop on a small CamVid copy, with default flags:
train -> pseudo-labels -> check-labels -> train stage 2 -> eval (and predict -> eval)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from agmm.cli import main

# A small, fast model; everything about the data (sizes, eval_resize, workers) stays the preset's.
SMALL = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.model_args={aspp_channels: 16, decoder_channels: 16, low_level_channels: 8}",
    "loss.embed_dim=8",
    "data.crop_size=64",
    "train.batch_size=2",
    "train.steps=2",
    "train.log_every=1",
    "train.val_every=2",
    "train.checkpoint_every=2",
    "train.progress_bar=false",
    "train.tensorboard=false",
    "eval.max_images=2",
]


def small_camvid(source, target):
    """4 train and 2 val images (every 30th frame, so that they differ) copied to target."""
    for split, count in (("train", 4), ("val", 2)):
        images = sorted((source / "images" / split).iterdir())[::30][:count]
        for image in images:
            for folder, path in (("images", image), ("labels", None)):
                path = path or next((source / "labels" / split).glob(f"{image.stem}.*"))
                (target / folder / split).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target / folder / split / path.name)
    return target


@pytest.mark.slow
def test_train_pseudo_labels_check_labels_train_stage2_eval(camvid, tmp_path, capsys):
    data = small_camvid(camvid, tmp_path / "camvid")
    stage1, stage2, pseudo = tmp_path / "stage1", tmp_path / "stage2", tmp_path / "stage1/pseudo"
    train = ["train", f"data.root={data}", *SMALL]
    assert main([*train, "--config", "camvid/points", f"output_dir={stage1}"]) == 0
    assert main(["pseudo-labels", "--checkpoint", str(stage1 / "last.pt"), "--out", str(pseudo), "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert re.search(r"weak labels \(labeled pixels\) +100\.0", printed)  # clicks from the masks
    for label in pseudo.glob("*.png"):
        with Image.open(label) as opened:
            assert opened.size == (480, 360)  # each image's own size, not data.eval_resize's
    check = ["check-labels", "--data", "camvid", "--root", str(data), "--split", "train"]
    assert main([*check, "--weak-label-dir", str(pseudo)]) == 0, capsys.readouterr().out
    assert "size mismatches: 0" in capsys.readouterr().out
    stage2_args = ["--config", "camvid/points_stage2", f"data.weak_label_dir={pseudo}"]
    assert main([*train, *stage2_args, f"output_dir={stage2}"]) == 0
    assert main(["eval", "--checkpoint", str(stage2), "--out", str(tmp_path / "m.json"), "--quiet"]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["split"] == "val" and metrics["resize"] == 180 and metrics["num_images"] == 2
    # predict -> eval round-trips with default flags
    predictions = tmp_path / "predictions"
    images = str(data / "images" / "val")
    assert main(["predict", "--checkpoint", str(stage2), images, "--out", str(predictions), "--quiet"]) == 0  # fmt: skip
    saved = ["--predictions", str(predictions), "--out", str(tmp_path / "p.json")]
    assert main(["eval", "--checkpoint", str(stage2), *saved, "--quiet"]) == 0
    from_pngs = json.loads((tmp_path / "p.json").read_text())
    assert from_pngs["miou"] == pytest.approx(metrics["miou"], abs=0.05)
