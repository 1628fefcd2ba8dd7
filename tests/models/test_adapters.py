"""Adapters: smp / torchvision / transformers models under the {"logits", "features"} contract.

Every model is built by its own library's constructor with random weights (no download), tiny.
"""

from __future__ import annotations

import copy

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
import torchvision
import transformers

from agmm.config import load_config
from agmm.errors import ConfigError
from agmm.eval.export import export_onnx
from agmm.gmm import AGMMLoss
from agmm.gmm.build import build_loss
from agmm.models import build_model
from agmm.models.adapters import AdaptedSegmenter, adapt
from agmm.models.build import build_segmenter

K = 3
_TV = torchvision.models.segmentation
_NO_WEIGHTS = {"weights": None, "weights_backbone": None}


def _segformer_config(**extra):
    return transformers.SegformerConfig(
        hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 2, 2],
        depths=[1, 1, 1, 1],
        decoder_hidden_size=32,
        num_labels=K,
        **extra,
    )


def _upernet_config():
    convnext = transformers.ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return transformers.UperNetConfig(
        backbone_config=convnext, hidden_size=32, auxiliary_in_channels=16, num_labels=K
    )


# case -> (library constructor with random init, the classifier module(s) whose input is features)
CASES = {
    "smp-deeplabv3plus": (
        lambda: smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=K, decoder_channels=32),
        ["segmentation_head.0"],
    ),
    "smp-unet": (
        lambda: smp.Unet(
            "resnet18", encoder_weights=None, classes=K, decoder_channels=(32, 16, 16, 16, 8)
        ),
        ["segmentation_head.0"],
    ),
    "smp-fpn-timm-universal": (
        lambda: smp.FPN(
            "tu-resnet10t",
            encoder_weights=None,
            classes=K,
            decoder_pyramid_channels=32,
            decoder_segmentation_channels=32,
        ),
        ["segmentation_head.0"],
    ),
    "smp-segformer-timm-universal": (
        lambda: smp.Segformer(
            "tu-resnet10t", encoder_weights=None, classes=K, decoder_segmentation_channels=32
        ),
        ["segmentation_head.0"],
    ),
    "torchvision-deeplabv3": (
        lambda: _TV.deeplabv3_mobilenet_v3_large(**_NO_WEIGHTS, num_classes=K, aux_loss=True),
        ["classifier.4"],
    ),
    "torchvision-fcn": (
        lambda: _TV.fcn_resnet50(**_NO_WEIGHTS, num_classes=K),
        ["classifier.4"],
    ),
    "torchvision-lraspp": (
        lambda: _TV.lraspp_mobilenet_v3_large(**_NO_WEIGHTS, num_classes=K),
        ["classifier.low_classifier", "classifier.high_classifier"],
    ),
    "transformers-segformer": (
        lambda: transformers.SegformerForSemanticSegmentation(_segformer_config()),
        ["decode_head.classifier"],
    ),
    "transformers-upernet": (
        lambda: transformers.UperNetForSemanticSegmentation(_upernet_config()),
        ["decode_head.classifier"],
    ),
}
STRIDES = {
    "smp-deeplabv3plus": 4,
    "smp-unet": 1,
    "smp-fpn-timm-universal": 4,
    "smp-segformer-timm-universal": 4,
    "torchvision-deeplabv3": 16,
    "torchvision-fcn": 8,
    "torchvision-lraspp": 8,
    "transformers-segformer": 4,
    "transformers-upernet": 4,
}


def _adapted(case: str) -> AdaptedSegmenter:
    torch.manual_seed(0)
    return adapt(CASES[case][0]())


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    """(case name, adapted model), built once per module; tests that train build their own."""
    return request.param, _adapted(request.param)


def _library_logits(model, images):
    """The wrapped model's own output, called the way its library documents."""
    if isinstance(model, transformers.PreTrainedModel):
        logits = model(pixel_values=images).logits  # SegFormer: 1/4 of the input
        return F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)
    out = model(images)
    return out["out"] if isinstance(out, dict) else out


def test_features_are_what_the_classifier_reads(case):
    name, adapted = case
    seen = []
    hooks = [
        adapted.model.get_submodule(path).register_forward_pre_hook(
            lambda module, inputs: seen.append(inputs[0])
        )
        for path in CASES[name][1]
    ]
    try:
        with torch.no_grad():
            out = adapted.eval()(torch.randn(2, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(out["features"], torch.cat(seen, dim=1))
    assert out["features"].shape[1] == adapted.feature_channels


def test_logits_are_the_library_models_own(case):
    _, adapted = case
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = adapted.eval()(images)["logits"]
        theirs = _library_logits(adapted.model, images)
    torch.testing.assert_close(ours, theirs)


def test_any_input_size_gives_input_size_logits_and_features_that_cover_it(case):
    name, adapted = case
    stride = STRIDES[name]
    assert adapted.feature_stride == stride
    assert adapted.num_classes == K
    with torch.no_grad():
        out = adapted.train()(torch.randn(2, 3, 50, 70))
    assert out["logits"].shape == (2, K, 50, 70)
    assert out["features"].shape == (
        2,
        adapted.feature_channels,
        -(-50 // stride),
        -(-70 // stride),
    )


def test_parameter_groups_cover_every_parameter_once(case):
    _, adapted = case
    groups = adapted.parameter_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(adapted.parameters()))
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in adapted.backbone.parameters()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_agmm_training_step_moves_backbone_and_classifier(name):
    adapted = _adapted(name).train()
    criterion = AGMMLoss(in_channels=adapted.feature_channels, num_classes=K, embed_dim=8)
    groups = adapted.parameter_groups(head_lr_mult=1.0)
    optimizer = torch.optim.SGD([*groups, {"params": criterion.parameters()}], lr=0.05)
    images = torch.randn(2, 3, 64, 64)
    weak = torch.full((2, 64, 64), 255, dtype=torch.long)
    weak[:, 5:10, 5:10], weak[:, 30:35, 30:35], weak[:, 50:55, 10:15] = 0, 1, 2
    classifier = adapted.model.get_submodule(CASES[name][1][0])
    before = [classifier.weight.clone(), next(adapted.backbone.parameters()).clone()]

    out = adapted(images)
    losses = criterion(out["features"], out["logits"], weak)
    losses["loss"].backward()
    optimizer.step()

    assert torch.isfinite(losses["loss"])
    assert losses["terms"]["self"] > 0  # the GMM ran on the features
    assert not torch.equal(classifier.weight, before[0])
    assert not torch.equal(next(adapted.backbone.parameters()), before[1])
    unused = [n for n, p in adapted.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []  # no parameter left without gradient (DDP would fail)


def test_auxiliary_heads_are_removed():
    adapted = adapt(_TV.deeplabv3_resnet50(**_NO_WEIGHTS, num_classes=K, aux_loss=True))
    assert adapted.model.aux_classifier is None
    upernet = adapt(transformers.UperNetForSemanticSegmentation(_upernet_config()))
    assert upernet.model.auxiliary_head is None
    with_aux = smp.Unet("resnet18", encoder_weights=None, classes=K, aux_params={"classes": K})
    assert adapt(with_aux).model.classification_head is None


def test_training_mode_features_skip_the_dropout_before_the_classifier():
    torch.manual_seed(0)
    adapted = adapt(transformers.SegformerForSemanticSegmentation(_segformer_config()))
    adapted.model.decode_head.dropout.p = 0.9
    seen = []
    adapted.model.decode_head.dropout.register_forward_hook(lambda m, i, o: seen.append(o))
    out = adapted.train()(torch.randn(1, 3, 32, 32))
    zeros_before_dropout = (out["features"] == 0).float().mean()
    assert zeros_before_dropout < (seen[0] == 0).float().mean()


# ------------------------------------------------------------------------- by name and config


def test_build_model_by_name_gives_the_libraries_models():
    unet = build_model(
        "smp",
        arch="unet",
        backbone="resnet18",
        num_classes=K,
        output_stride=None,
        decoder_channels=(32, 16, 16, 16, 8),
    )
    assert isinstance(unet.model, smp.Unet) and unet.feature_channels == 8
    deeplab = build_model("smp", backbone="resnet18", num_classes=K, output_stride=8)
    assert isinstance(deeplab.model, smp.DeepLabV3Plus) and deeplab.model.encoder.output_stride == 8
    lraspp = build_model("torchvision", arch="lraspp", num_classes=K, output_stride=None)
    assert isinstance(lraspp.model, _TV.LRASPP) and lraspp.feature_channels == 40 + 128
    segformer = build_model(
        "transformers",
        arch="segformer",
        num_classes=K,
        output_stride=None,
        config={"hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "decoder_hidden_size": 16},
    )
    assert segformer.model.config.num_labels == K and segformer.feature_channels == 16


def test_config_builds_an_smp_model_and_its_loss():
    cfg = load_config(
        None,
        [
            "model.name=smp",
            "model.arch=fpn",
            "model.backbone=tu-resnet10t",
            "model.pretrained=false",
            "model.output_stride=null",
            "model.model_args={decoder_pyramid_channels: 32, decoder_segmentation_channels: 32}",
        ],
    )
    model = build_segmenter(cfg, K)
    assert isinstance(model.model, smp.FPN) and model.backbone_name == "tu-resnet10t"
    assert isinstance(build_loss(cfg, model, K), AGMMLoss)


def test_pretrained_file_is_the_backbone_state_dict(tmp_path):
    source = smp.Unet("resnet18", encoder_weights=None, classes=K)
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pth")
    model = build_model(
        "smp",
        arch="unet",
        backbone="resnet18",
        num_classes=K,
        output_stride=None,
        pretrained=str(tmp_path / "encoder.pth"),
    )
    torch.testing.assert_close(
        model.backbone.state_dict()["conv1.weight"], source.encoder.state_dict()["conv1.weight"]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "smp", "arch": "unet", "output_stride": 16}, "no output-stride setting"),
        ({"name": "smp", "arch": "dpt"}, "valid:"),
        ({"name": "smp", "cls_head": True}, "no classification branch"),
        ({"name": "torchvision", "arch": "lraspp", "backbone": "resnet50"}, "mobilenet_v3_large"),
        ({"name": "torchvision", "output_stride": 8}, "set it to null"),
        ({"name": "transformers", "arch": "maskformer", "output_stride": None}, "segformer"),
        ({"name": "deeplabv3plus", "arch": "unet"}, "model.arch"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    kwargs = {"output_stride": None, **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_model(kwargs.pop("name"), num_classes=K, **kwargs)


def test_unknown_models_and_activations_are_refused():
    with pytest.raises(ConfigError, match="supported: segmentation_models_pytorch"):
        adapt(torch.nn.Conv2d(3, K, 1))
    with pytest.raises(ConfigError, match="activation=None"):
        adapt(smp.Unet("resnet18", encoder_weights=None, classes=K, activation="softmax2d"))


def test_a_deep_copy_taps_its_own_classifier():
    """timm's ModelEmaV3 (train.ema_decay) deep-copies the model: the copy's hooks must be its own."""
    adapted = _adapted("smp-fpn-timm-universal").eval()
    twin = copy.deepcopy(adapted)
    with torch.no_grad():
        for parameter in twin.parameters():
            parameter.add_(torch.randn_like(parameter))
        images = torch.randn(1, 3, 64, 64)
        assert not torch.equal(twin(images)["features"], adapted(images)["features"])


def test_exports_to_onnx_like_the_built_in_models(tmp_path):
    adapted = _adapted("torchvision-lraspp")
    result = export_onnx(adapted, tmp_path / "lraspp.onnx", image_size=(64, 96))
    assert result["dynamic"] and result["max_abs_diff"] < 1e-4


def test_calling_the_library_model_directly_keeps_no_tensors():
    adapted = _adapted("transformers-segformer")
    adapted.model(pixel_values=torch.randn(1, 3, 32, 32))
    assert adapted._tapped is None
    assert adapted(torch.randn(1, 3, 32, 32))["features"].shape[1] == adapted.feature_channels
