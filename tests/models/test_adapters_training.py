"""`agmm train` / `agmm eval` with a library model picked by config (model.name: smp)."""

from __future__ import annotations

import json

import pytest
import segmentation_models_pytorch as smp

from agmm.cli import main
from agmm.models.build import load_model

# What a user writes: a YAML file naming the library model (a tiny U-Net, random init).
CONFIG = """
data:
  name: synthetic
  supervision: points
  weak_label_args: {points_per_class: 3}
  dataset_args: {num_images: 8, image_size: [40, 40], num_classes: 3}
  crop_size: 32
  scale_range: [0.75, 1.25]
  num_workers: 0
model:
  name: smp
  arch: unet
  backbone: resnet18
  pretrained: false
  output_stride: null
  model_args: {decoder_channels: [32, 16, 16, 16, 8]}
loss: {embed_dim: 8}
train:
  batch_size: 2
  lr: 0.01
  steps: 4
  log_every: 2
  val_every: 2
  checkpoint_every: 4
  progress_bar: false
  tensorboard: false
  num_threads: 1
eval: {max_images: 2, batch_size: 1}
"""


@pytest.mark.slow
def test_agmm_train_trains_and_evaluates_an_smp_unet_from_config(tmp_path, capsys):
    out, config = tmp_path / "run", tmp_path / "smp_unet.yaml"
    config.write_text(CONFIG)
    assert main(["train", "--config", str(config), f"output_dir={out}"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["step"] == 4 and result["skipped_steps"] == 0
    assert 0.0 <= result["val/miou"] <= 1.0  # 40×40 validation images: not multiples of 32
    assert 0.0 <= result["pseudo/gmm_miou"] <= 1.0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train/self", "train/weak", "train/con"} <= set(
        next(x for x in lines if "train/loss" in x)
    )

    model, _, _ = load_model(out / "last.pt")  # rebuilt from the stored config: the same smp model
    assert isinstance(model.model, smp.Unet)
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--quiet", "--max-images", "2",
                 "--out", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    assert 0.0 <= json.loads((tmp_path / "eval.json").read_text())["miou"] <= 1.0
