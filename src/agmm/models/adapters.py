"""Models of segmentation_models_pytorch, torchvision and transformers as agmm segmenters.

``adapt(model)`` wraps a model its own library built; ``build_smp``, ``build_torchvision`` and
``build_transformers`` (the registry's ``smp``, ``torchvision``, ``transformers``) build one by
name. Either way ``forward(images (B, 3, H, W))`` returns ``{"logits": (B, K, H, W), "features":
(B, C, h, w)}`` where ``features`` is the map the model's classifier reads (the paper's decoder
features), captured by a forward pre-hook on the classifier, so the library's own forward runs
unchanged and the logits are exactly the library's.

Which module is "the classifier" (``WIRINGS``):

- smp (every arch with a ``SegmentationHead``): the head's conv; ``features`` = decoder output.
- torchvision DeepLabV3 / FCN: the last conv of ``classifier``, read before the dropout in front
  of it (FCN); LR-ASPP: its two 1×1 classifiers act on the low-level map and on the upsampled
  high-level branch, and ``logits`` is their sum, i.e. one 1×1 conv on the two maps concatenated:
  ``features`` is that concatenation (low channels first).
- transformers SegFormer: ``decode_head.classifier``, read before ``decode_head.dropout``;
  UperNet: ``decode_head.classifier`` (the FPN bottleneck's output).

Auxiliary heads (smp ``aux_params``, torchvision ``aux_classifier``, UperNet ``auxiliary_head``)
are removed: the loss does not use them, and parameters without gradients break DDP.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
import torchvision
import transformers
from segmentation_models_pytorch.base import SegmentationModel
from torch import nn
from torchvision.models.segmentation import FCN, LRASPP, DeepLabV3

from agmm.errors import CheckpointError, ConfigError
from agmm.models.base import Segmenter
from agmm.models.pretrained import load_backbone_weights


@dataclass(frozen=True)
class Wiring:
    """Where one kind of library model keeps what the adapter needs (module paths)."""

    family: str
    """smp, torchvision or transformers: how the model is called and its logits read."""
    backbone: str
    """The pretrained part (lr multiplier 1 in ``parameter_groups``)."""
    taps: tuple[str, ...]
    """Modules whose inputs, concatenated on channels, are ``features``."""
    aux_heads: tuple[str, ...] = ()
    """Auxiliary heads set to None."""
    size_divisor: int = 1
    """Inputs are zero-padded (bottom/right) to a multiple of this."""


def _smp_wiring(model: SegmentationModel) -> Wiring:
    head = model.segmentation_head
    if not isinstance(head, smp.base.SegmentationHead):
        raise ConfigError(
            f"model: smp {type(model).__name__} has a {type(head).__name__}, not a "
            "SegmentationHead; the smp adapter supports the archs that have one "
            f"({', '.join(SMP_ARCHS)})"
        )
    if not isinstance(head[2].activation, nn.Identity):
        raise ConfigError(
            f"model: smp {type(model).__name__} ends in {head[2].activation}; AGMM needs raw "
            "logits: build it with activation=None"
        )
    return Wiring(
        family="smp",
        backbone="encoder",
        taps=("segmentation_head.0",),
        aux_heads=("classification_head",),
        size_divisor=model.encoder.output_stride,
    )


def _torchvision_wiring(model: nn.Module) -> Wiring:
    if isinstance(model, LRASPP):
        taps = ("classifier.low_classifier", "classifier.high_classifier")
        return Wiring(family="torchvision", backbone="backbone", taps=taps)
    last = len(model.classifier) - 1
    before = last - 1 if isinstance(model.classifier[last - 1], nn.Dropout) else last
    return Wiring(
        family="torchvision",
        backbone="backbone",
        taps=(f"classifier.{before}",),
        aux_heads=("aux_classifier",),
    )


def _segformer_wiring(model: nn.Module) -> Wiring:
    return Wiring(family="transformers", backbone="segformer", taps=("decode_head.dropout",))


def _upernet_wiring(model: nn.Module) -> Wiring:
    # ConvNeXt / Swin stems floor odd sizes; a multiple of 32 keeps every stage's grid exact.
    return Wiring(
        family="transformers",
        backbone="backbone",
        taps=("decode_head.classifier",),
        aux_heads=("auxiliary_head",),
        size_divisor=32,
    )


# Model class -> its wiring; ``adapt`` takes the first entry the model is an instance of.
WIRINGS = {
    SegmentationModel: _smp_wiring,
    DeepLabV3: _torchvision_wiring,
    FCN: _torchvision_wiring,
    LRASPP: _torchvision_wiring,
    transformers.SegformerForSemanticSegmentation: _segformer_wiring,
    transformers.UperNetForSemanticSegmentation: _upernet_wiring,
}


class AdaptedSegmenter(Segmenter):
    """A library's segmentation model under the agmm contract (see the module docstring).

    Any input size works: images are zero-padded (bottom/right) to a multiple of
    ``wiring.size_divisor``, logits are upsampled (bilinear) to the padded size if the library
    returns them smaller (SegFormer: 1/4) and cropped to the input; ``features`` keeps the
    ``ceil(H / feature_stride) × ceil(W / feature_stride)`` cells that cover the input.
    ``feature_channels`` and ``feature_stride`` are measured once, on a zero image, when wrapping.
    """

    def __init__(self, model: nn.Module, wiring: Wiring, *, backbone_name: str = "") -> None:
        super().__init__()
        self.model = model
        self.wiring = wiring
        self.backbone_name = backbone_name or type(model).__name__
        for path in wiring.aux_heads:
            if getattr(model, path, None) is not None:
                setattr(model, path, None)
        self._tapped: list[torch.Tensor] | None = None  # a list only during our own forward
        for path in wiring.taps:
            model.get_submodule(path).register_forward_pre_hook(self._tap)
        self.feature_channels, self.feature_stride, self.num_classes = self._measure()

    @property
    def backbone(self) -> nn.Module:
        return self.model.get_submodule(self.wiring.backbone)

    def _tap(self, module: nn.Module, inputs: tuple) -> None:
        if self._tapped is not None:  # calls of the library model itself keep nothing
            self._tapped.append(inputs[0])

    def _library_logits(self, images: torch.Tensor) -> torch.Tensor:
        family = self.wiring.family
        if family == "smp":
            out = self.model(images)
            return out[0] if isinstance(out, tuple) else out
        if family == "torchvision":
            return self.model(images)["out"]
        return self.model(pixel_values=images).logits

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = images.shape[2:]
        divisor = self.wiring.size_divisor
        pad_h, pad_w = -height % divisor, -width % divisor
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))  # 0 = the mean colour after normalisation
        self._tapped = []
        try:
            logits = self._library_logits(images)
            tapped = self._tapped
        finally:
            self._tapped = None
        if len(tapped) != len(self.wiring.taps):
            raise RuntimeError(
                f"{type(self.model).__name__}: expected {len(self.wiring.taps)} classifier input(s) "
                f"per forward, got {len(tapped)}"
            )
        features = torch.cat(tapped, dim=1)
        if logits.shape[2:] != images.shape[2:]:
            logits = F.interpolate(
                logits, size=images.shape[2:], mode="bilinear", align_corners=False
            )
        stride = getattr(self, "feature_stride", 1)
        cells = (math.ceil(height / stride), math.ceil(width / stride))
        return {
            "logits": logits[:, :, :height, :width],
            "features": features[:, :, : cells[0], : cells[1]],
        }

    @torch.no_grad()
    def _measure(self) -> tuple[int, int, int]:
        """(feature channels, feature stride, classes) from one forward of a zero image."""
        size = max(64, 2 * self.wiring.size_divisor)
        parameter = next(self.model.parameters())
        probe = torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype)
        was_training = self.model.training
        self.model.eval()
        try:
            out = self(probe)
        finally:
            self.model.train(was_training)
        features, logits = out["features"], out["logits"]
        if features.shape[2] != features.shape[3] or size % features.shape[3]:
            raise ConfigError(
                f"model: the features of {type(self.model).__name__} on a {size}×{size} image "
                f"are {tuple(features.shape[2:])}, not a whole-stride grid"
            )
        return features.shape[1], size // features.shape[3], logits.shape[1]


def adapt(model: nn.Module, *, backbone_name: str = "") -> AdaptedSegmenter:
    """Wrap a segmentation model of smp, torchvision or transformers (built by its own library).

    ``adapt(smp.Unet("resnet34", classes=21))(images)`` -> ``{"logits", "features"}``; hand
    ``out["features"]`` and ``out["logits"]`` to ``AGMMLoss(in_channels=adapted.feature_channels,
    ...)``. The wrapper owns the model (its auxiliary heads are removed). Raises ``ConfigError``
    for a model type it does not know, naming the ones it does.
    """
    for model_class, wiring in WIRINGS.items():
        if isinstance(model, model_class):
            return AdaptedSegmenter(model, wiring(model), backbone_name=backbone_name)
    known = ", ".join(f"{c.__module__.split('.')[0]}.{c.__name__}" for c in WIRINGS)
    raise ConfigError(f"model: cannot adapt a {type(model).__name__}; supported: {known}")


# ------------------------------------------------------------------------------------- builders

# smp architectures with a SegmentationHead (DPT has its own head and is not supported).
SMP_ARCHS = (
    "deeplabv3",
    "deeplabv3plus",
    "fpn",
    "linknet",
    "manet",
    "pan",
    "pspnet",
    "segformer",
    "unet",
    "unetplusplus",
    "upernet",
)
TORCHVISION_ARCHS = {
    "deeplabv3": ("resnet50", "resnet101", "mobilenet_v3_large"),
    "fcn": ("resnet50", "resnet101"),
    "lraspp": ("mobilenet_v3_large",),
}
TRANSFORMERS_ARCHS = {
    "segformer": (transformers.SegformerForSemanticSegmentation, transformers.SegformerConfig),
    "upernet": (transformers.UperNetForSemanticSegmentation, transformers.UperNetConfig),
}


def _wants_imagenet(pretrained: bool | str | os.PathLike | None) -> bool:
    return pretrained is True or pretrained == "imagenet"


def _no_cls_head(cls_head: bool, family: str) -> None:
    if cls_head:
        raise ConfigError(
            f"model.cls_head: the {family} adapter has no classification branch; image tags "
            "need model.name deeplabv3plus or vit"
        )


def _load_backbone_file(adapted: AdaptedSegmenter, pretrained) -> AdaptedSegmenter:
    """A local file: the state dict of the library model's backbone module."""
    if pretrained and not _wants_imagenet(pretrained):
        load_backbone_weights(adapted.backbone, Path(pretrained).expanduser())
    return adapted


def build_smp(
    *,
    num_classes: int,
    arch: str | None = None,
    backbone: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    output_stride: int | None = None,
    cls_head: bool = False,
    **kwargs,
) -> AdaptedSegmenter:
    """``smp.create_model(arch, encoder_name=backbone, classes=num_classes, **kwargs)``, adapted.

    ``arch`` defaults to ``deeplabv3plus``, ``backbone`` to ``resnet34`` (smp's default; any
    ``tu-<timm name>`` works too). ``pretrained``: True / "imagenet" = smp's ImageNet encoder
    weights, a path = a state dict of ``model.encoder``. ``output_stride`` (8 or 16) sets
    ``encoder_output_stride`` of deeplabv3 / deeplabv3plus and must be None for other archs.
    """
    _no_cls_head(cls_head, "smp")
    arch = (arch or "deeplabv3plus").lower()
    if arch not in SMP_ARCHS:
        raise ConfigError(f"model.arch: smp arch {arch!r} is not supported; valid: {SMP_ARCHS}")
    if output_stride is not None:
        if arch not in ("deeplabv3", "deeplabv3plus"):
            raise ConfigError(
                f"model.output_stride: smp {arch} has no output-stride setting; set it to null"
            )
        kwargs["encoder_output_stride"] = output_stride
    encoder = backbone or "resnet34"
    try:
        model = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights="imagenet" if _wants_imagenet(pretrained) else None,
            classes=num_classes,
            **kwargs,
        )
    except (KeyError, ValueError, TypeError) as error:
        raise ConfigError(f"model: smp {arch} with encoder {encoder!r}: {error}") from error
    return _load_backbone_file(adapt(model, backbone_name=encoder), pretrained)


def build_torchvision(
    *,
    num_classes: int,
    arch: str | None = None,
    backbone: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    output_stride: int | None = None,
    cls_head: bool = False,
    **kwargs,
) -> AdaptedSegmenter:
    """``torchvision.models.get_model(f"{arch}_{backbone}", num_classes=..., **kwargs)``, adapted.

    ``arch``: deeplabv3 (default), fcn or lraspp; ``backbone``: see ``TORCHVISION_ARCHS`` (default:
    the first). ``pretrained``: True / "imagenet" = torchvision's ImageNet backbone weights
    (``weights_backbone="DEFAULT"``), a path = a state dict of ``model.backbone``. The output
    stride is fixed by torchvision (8 for ResNets, 16 for MobileNetV3): ``output_stride`` must be
    None.
    """
    _no_cls_head(cls_head, "torchvision")
    arch = (arch or "deeplabv3").lower()
    if arch not in TORCHVISION_ARCHS:
        raise ConfigError(
            f"model.arch: torchvision arch {arch!r} is not supported; valid: {sorted(TORCHVISION_ARCHS)}"
        )
    backbone = backbone or TORCHVISION_ARCHS[arch][0]
    if backbone not in TORCHVISION_ARCHS[arch]:
        raise ConfigError(
            f"model.backbone: torchvision {arch} comes with {TORCHVISION_ARCHS[arch]}, not {backbone!r}"
        )
    if output_stride is not None:
        raise ConfigError("model.output_stride: torchvision fixes it; set it to null")
    if arch != "lraspp":
        kwargs.setdefault("aux_loss", False)
    try:
        model = torchvision.models.get_model(
            f"{arch}_{backbone}",
            weights=None,
            weights_backbone="DEFAULT" if _wants_imagenet(pretrained) else None,
            num_classes=num_classes,
            **kwargs,
        )
    except TypeError as error:  # a keyword the builder does not take
        raise ConfigError(f"model.model_args: torchvision {arch}_{backbone}: {error}") from error
    return _load_backbone_file(adapt(model, backbone_name=backbone), pretrained)


def build_transformers(
    *,
    num_classes: int,
    arch: str | None = None,
    backbone: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    output_stride: int | None = None,
    cls_head: bool = False,
    config: dict | None = None,
) -> AdaptedSegmenter:
    """A transformers SegFormer or UperNet, adapted.

    ``arch``: segformer (default) or upernet. ``backbone``: a Hub id or a local folder of a saved
    model (``nvidia/mit-b0``, ``openmmlab/upernet-convnext-tiny``), or None for the library's
    default configuration. ``pretrained`` True loads that model's weights (a new classifier for
    ``num_classes``); a string is the id / folder to load the weights from. Without weights the
    model is built from the configuration (of ``backbone`` if given) with ``config`` overriding
    its fields (e.g. ``{"hidden_sizes": [32, 64, 160, 256]}``), randomly initialised.
    ``output_stride`` must be None.
    """
    _no_cls_head(cls_head, "transformers")
    arch = (arch or "segformer").lower()
    if arch not in TRANSFORMERS_ARCHS:
        raise ConfigError(
            f"model.arch: transformers arch {arch!r} is not supported; valid: {sorted(TRANSFORMERS_ARCHS)}"
        )
    if output_stride is not None:
        raise ConfigError("model.output_stride: transformers models fix it; set it to null")
    model_class, config_class = TRANSFORMERS_ARCHS[arch]
    overrides = {**(config or {}), "num_labels": num_classes}
    source = pretrained if isinstance(pretrained, str | os.PathLike) else backbone
    if pretrained and source is None:
        raise ConfigError(
            "model.backbone: pretrained transformers weights need a Hub id or a local folder"
        )
    try:
        if pretrained:
            model = model_class.from_pretrained(
                str(source), ignore_mismatched_sizes=True, **overrides
            )
        elif backbone is not None:
            model = model_class(config_class.from_pretrained(str(backbone), **overrides))
        else:
            model = model_class(config_class(**overrides))
    except OSError as error:  # what transformers raises for an unknown id, no network, no file
        raise CheckpointError(
            f"model.backbone: cannot load {source!r} with transformers ({error})"
        ) from error
    return adapt(model, backbone_name=str(source or arch))
