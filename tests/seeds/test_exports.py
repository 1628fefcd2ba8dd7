"""Dataset-level seed exports: CAM seeds from a model, and the `agmm seeds` verb."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import agmm.data
from agmm.cli import main
from agmm.errors import CheckpointError, LabelError
from agmm.models import build_model
from agmm.seeds import compute_cam_seeds
from agmm.seeds.cam_export import multi_scale_cams
from tests.seeds.test_box_cache import BoxDataset


def _tiny_model(cls_head=True):
    return build_model(
        "deeplabv3plus", num_classes=3, backbone="resnet18", cls_head=cls_head, output_stride=16
    )


def test_cam_seeds_of_a_dataset_are_written_and_untagged_images_counted(tmp_path):
    dataset = BoxDataset(tmp_path, count=2)
    real_getitem = BoxDataset.__getitem__

    class Untagged(BoxDataset):
        def __getitem__(self, index):
            sample = real_getitem(self, index)
            if index == 1:
                sample["tags"] = torch.zeros(3)
            return sample

    dataset.__class__ = Untagged
    run = compute_cam_seeds(_tiny_model(), dataset, tmp_path / "out", progress=False)
    assert run.untagged == ["img1"]
    first = np.asarray(Image.open(tmp_path / "out" / "img0.png"))
    assert first.shape == (64, 64) and set(np.unique(first)) <= {0, 1, 255}
    assert (np.asarray(Image.open(run.paths["img1"])) == 255).all()
    assert run.quality is not None and np.isfinite(run.quality.coverage)


def test_cam_seeds_need_a_classification_head_and_fitting_tags(tmp_path):
    dataset = BoxDataset(tmp_path, count=1)
    with pytest.raises(CheckpointError, match="cls_head"):
        compute_cam_seeds(_tiny_model(cls_head=False), dataset, tmp_path / "out", progress=False)
    dataset.num_classes = 4
    with pytest.raises((LabelError, CheckpointError), match="4"):
        compute_cam_seeds(_tiny_model(), dataset, tmp_path / "out", progress=False)


def test_agmm_seeds_boxes_writes_pngs_and_prints_precision(tmp_path, monkeypatch, capsys):
    def fake_build_dataset(name, *, root, split, supervision, weak_label_dir=None, **kwargs):
        assert (name, split, supervision) == ("toy", "train", "boxes")
        return BoxDataset(tmp_path, count=2)

    monkeypatch.setattr(agmm.data, "build_dataset", fake_build_dataset, raising=False)
    out = tmp_path / "seeds"
    argv = ["seeds", "--data", "toy", "--root", str(tmp_path), "--supervision", "boxes"]
    code = main([*argv, "--out", str(out), "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["img0.png", "img1.png"]
    printed = capsys.readouterr().out
    assert "2 computed" in printed and "| red |" in printed and "**class mean**" in printed
    main([*argv, "--out", str(out), "--no-progress"])
    assert "2 from the cache" in capsys.readouterr().out


def test_agmm_seeds_tags_without_checkpoint_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        agmm.data, "build_dataset", lambda *a, **k: BoxDataset(tmp_path, 1), raising=False
    )
    argv = ["seeds", "--data", "toy", "--root", str(tmp_path), "--supervision", "tags"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 1
    assert "--checkpoint" in capsys.readouterr().err


class PointwiseCAMs(torch.nn.Module):
    """A stand-in whose CAMs are a 1×1 conv of the image: equivariant to flips and scales."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, images):
        return {"cams": self.conv(images)}


def test_multi_scale_and_flipped_cams_are_summed_at_the_input_size():
    model = PointwiseCAMs()
    images = torch.randn(2, 3, 16, 12)
    single = multi_scale_cams(model, images)
    torch.testing.assert_close(single, torch.relu(model(images)["cams"]))
    torch.testing.assert_close(multi_scale_cams(model, images, flip=True), 2 * single)
    several = multi_scale_cams(model, images, scales=(1.0, 0.5, 1.5), flip=True)
    assert several.shape == (2, 2, 16, 12) and (several >= 0).all()


def test_agmm_seeds_that_fail_leave_no_pngs_and_say_what_is_resumable(
    tmp_path, monkeypatch, capsys
):
    data = tmp_path / "data"
    data.mkdir()
    dataset = BoxDataset(data, count=3)
    monkeypatch.setattr(agmm.data, "build_dataset", lambda *a, **k: dataset, raising=False)
    argv = ["seeds", "--data", "toy", "--root", str(data), "--supervision", "boxes"]
    out = tmp_path / "seeds"
    (data / "img0.png").write_bytes(b"not a png")  # the first image: nothing computed
    assert main([*argv, "--out", str(out), "--no-progress"]) == 1
    assert "img0.png" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no seeds, no .cache
    BoxDataset(data, count=3)  # repaired
    (data / "img2.png").write_bytes(b"not a png")  # the last image: two seeds cached
    assert main([*argv, "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{out}/.cache keeps the seeds computed so far" in err
    assert list(out.glob("*.png")) == []
    assert main([*argv, "--out", str(out), "--no-progress", "--max-images", "2"]) == 0
    assert "2 from the cache" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == ["img0.png", "img1.png"]
