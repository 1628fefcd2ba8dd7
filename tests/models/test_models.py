"""Segmenters: output contract, strides, parameter groups, pretrained weights (all tiny, CPU)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from agmm.errors import CheckpointError, ConfigError
from agmm.models import CAMHead, build_model

TINY = {"deeplabv3plus": "resnet18", "vit": "vit_tiny_patch16_224"}
NARROW = {
    "deeplabv3plus": {"aspp_channels": 32, "decoder_channels": 32},
    "vit": {"neck_channels": 32},
}


def _build(name, **kwargs):
    return build_model(name, num_classes=3, backbone=TINY[name], **{**NARROW[name], **kwargs})


@pytest.fixture(scope="module", params=sorted(TINY))
def head_model(request):
    """(name, tiny model with the classification head), built once per module."""
    return request.param, _build(request.param, cls_head=True)


def test_forward_backward_gives_the_contract_shapes(head_model):
    name, model = head_model
    model.train().zero_grad()
    out = model(torch.randn(2, 3, 64, 64))
    stride = 4 if name == "deeplabv3plus" else 16
    assert model.feature_channels == 32  # the builder's keyword arguments reach the model
    assert out["logits"].shape == (2, 3, 64, 64)
    assert out["features"].shape == (2, model.feature_channels, 64 // stride, 64 // stride)
    assert model.feature_stride == stride
    assert out["cls_logits"].shape == (2, 3)
    assert out["cams"].shape[:2] == (2, 3)
    loss = out["logits"].mean() + out["features"].mean() + out["cls_logits"].mean()
    loss.backward()
    assert model.classifier.weight.grad is not None
    assert next(model.backbone.parameters()).grad is not None


@pytest.mark.parametrize("name", sorted(TINY))
def test_cls_head_is_off_by_default(name):
    out = _build(name)(torch.randn(1, 3, 32, 32))
    assert set(out) == {"logits", "features", "coarse_logits"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_logits_are_the_bilinear_upsampling_of_the_coarse_logits(name):
    """The contract AGMMLoss relies on when it is given ``coarse_logits``; a ViT input that is
    not a multiple of the patch size gives none (its logits are cropped)."""
    model = _build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 48))
        coarse = out["coarse_logits"]
        assert coarse.shape[2:] == out["features"].shape[2:]
        expected = F.interpolate(coarse, size=(64, 48), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out["logits"], expected)
        if name == "vit":
            assert "coarse_logits" not in model(torch.randn(1, 3, 60, 48))


def test_cam_mean_equals_cls_logits(head_model):
    _, model = head_model
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    torch.testing.assert_close(out["cams"].mean(dim=(2, 3)), out["cls_logits"])


def test_parameter_groups_cover_every_parameter_once(head_model):
    _, model = head_model
    groups = model.parameter_groups()
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}


def test_output_stride_8_and_16_give_their_feature_sizes():
    images = torch.randn(1, 3, 64, 64)
    for stride in (8, 16):
        model = _build("deeplabv3plus", output_stride=stride, cls_head=True).eval()
        with torch.no_grad():
            out = model(images)
        assert out["features"].shape[2:] == (16, 16)  # decoder: always 1/4
        assert out["cams"].shape[2:] == (64 // stride, 64 // stride)  # last stage: 1/os


def test_bad_output_stride_and_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="output_stride"):
        _build("deeplabv3plus", output_stride=32)
    with pytest.raises(ConfigError, match="output_stride"):
        _build("vit", output_stride=8)
    with pytest.raises(ConfigError, match="deeplabv3plus"):
        build_model("unet", num_classes=3)
    with pytest.raises(ConfigError, match="no_such_net"):
        build_model("deeplabv3plus", num_classes=3, backbone="no_such_net")


def test_deeplab_batch_of_one_works_in_eval_and_train():
    model = _build("deeplabv3plus")
    model.train()
    model(torch.randn(1, 3, 32, 32))["logits"].mean().backward()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 40))["logits"].shape == (1, 3, 48, 40)


def test_vit_pads_sizes_not_divisible_by_the_patch_and_crops_back():
    model = _build("vit").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 50, 70))
    assert out["logits"].shape == (1, 3, 50, 70)
    assert out["features"].shape[2:] == (4, 5)


@pytest.fixture(scope="module")
def saved_backbones(tmp_path_factory):
    """name -> (path, state dict) of a full ImageNet-layout timm model saved as a file."""
    folder = tmp_path_factory.mktemp("weights")
    saved = {}
    for name, backbone in TINY.items():
        state = timm.create_model(backbone, pretrained=False).state_dict()
        torch.save({"state_dict": state}, folder / f"{name}.pth")
        saved[name] = (folder / f"{name}.pth", state)
    return saved


@pytest.mark.parametrize("name", sorted(TINY))
def test_pretrained_path_loads_the_saved_backbone(name, saved_backbones):
    path, expected = saved_backbones[name]
    model = _build(name, pretrained=str(path))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)


def test_missing_or_unfitting_weights_are_clear_errors(tmp_path, saved_backbones):
    with pytest.raises(CheckpointError, match="nowhere.pth.*not found"):
        _build("deeplabv3plus", pretrained=str(tmp_path / "nowhere.pth"))
    with pytest.raises(CheckpointError, match="vit.pth.*does not fit"):
        _build("deeplabv3plus", pretrained=saved_backbones["vit"][0])


def test_pretrained_true_without_network_is_a_clear_error(monkeypatch):
    real_create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("no network")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError, match="resnet18.*pretrained="):
        _build("deeplabv3plus", pretrained=True)


# Backbone sizes without the ImageNet classifier, in millions (timm model cards minus the fc/head).
PAPER_BACKBONES = [
    ("deeplabv3plus", "resnet34", 21.28),
    ("deeplabv3plus", "resnet50", 23.51),
    ("deeplabv3plus", "resnet101", 42.50),
    ("vit", "vit_small_patch16_224", 21.67),
    ("vit", "vit_base_patch16_224", 85.80),
]


@pytest.mark.parametrize(("name", "backbone", "millions"), PAPER_BACKBONES)
def test_paper_backbones_build_with_their_sizes(name, backbone, millions):
    model = build_model(name, num_classes=21, backbone=backbone, output_stride=16)
    count = sum(p.numel() for p in model.backbone.parameters()) / 1e6
    assert count == pytest.approx(millions, rel=0.01)
    assert model.feature_channels == 256


def test_vit_weights_of_another_grid_size_are_resampled(saved_backbones):
    path, _ = saved_backbones["vit"]  # stored for 224×224 inputs: a 14×14 grid
    model = _build("vit", pretrained=path, img_size=64)
    assert model.backbone.pos_embed.shape == (1, 1 + 4 * 4, 192)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64))["features"].shape == (1, 32, 4, 4)


def test_cam_head_pools_by_average_or_by_max_as_toco():
    features = torch.randn(2, 8, 5, 5)
    for pooling, pool in (("avg", torch.mean), ("max", torch.amax)):
        head = CAMHead(in_channels=8, num_classes=3, pooling=pooling)
        cls_logits, cams = head(features)
        assert cams.shape == (2, 3, 5, 5)
        expected = head.classifier(pool(features, dim=(2, 3), keepdim=True)).flatten(1)
        torch.testing.assert_close(cls_logits, expected)
    with pytest.raises(ConfigError, match="cam_pooling"):
        _build("vit", cls_head=True, cam_pooling="median")
