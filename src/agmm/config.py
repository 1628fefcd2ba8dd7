"""One config object per run: a dataclass tree filled from YAML, overridden by ``key=value``.

``load_config("camvid/points", ["train.steps=20", "loss.distance=sqeuclid"])`` reads the shipped
file ``agmm/configs/camvid/points.yaml`` (a path to any YAML file works too), merges the files named
by its ``_base_`` key underneath it, applies the overrides (values parsed by YAML rules; a mapping
merges into the one below it, ``{}`` empties it) and checks
every key and type against the dataclasses below. Anything wrong raises
:class:`agmm.errors.ConfigError` naming the key, before any model is built.

Defaults are the paper's recipe (DeepLabV3+ R101, OS 8, SGD lr 1e-3 with 10x on the head, poly 0.9,
crop 321, batch 16, all GMM terms and one OEM step on). A default that is not from the paper says
where it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agmm.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

Supervision = Literal["points", "scribbles", "blocks", "boxes", "tags", "full", "mixed"]


@dataclass
class DataConfig:
    name: str = "voc"
    """A key of ``agmm.data.DATASETS`` (camvid, voc, coco, cityscapes, ade20k, folder, synthetic)."""
    root: str | None = None
    """Dataset folder; ignored by ``synthetic``."""
    supervision: Supervision = "points"
    weak_label_dir: str | dict[str, str] | None = None
    """Folder of weak-label PNGs (or a mapping kind -> folder for mixed supervision); None
    simulates them from the dense masks, seeded by (seed, image name)."""
    weak_label_args: dict[str, Any] = field(default_factory=dict)
    """Simulator settings, e.g. ``{points_per_class: 3}`` (see ``agmm make-labels``)."""
    box_seed_args: dict[str, Any] = field(default_factory=dict)
    """Boxes without ``weak_label_dir``: options of ``agmm.seeds.box_cache.compute_box_seeds``
    (method, iterations, ...); the seeds are computed once before training and cached."""
    box_seed_cache: str | None = None
    """Cache folder of box seeds (keyed by image and box contents); None = ~/.cache/agmm/box_seeds."""
    dataset_args: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the dataset class (e.g. ``image_size`` for synthetic)."""
    train_split: str = "train"
    val_split: str = "val"
    crop_size: int = 321
    scale_range: tuple[float, float] = (0.5, 2.0)
    """Random rescale before the crop (DeepLab's usual 0.5-2.0; the paper defers to its baselines)."""
    hflip: bool = True
    color_jitter: float = 0.2
    """Not in the paper; a mild default of ToCo/TEL-style training pipelines."""
    eval_resize: int | None = None
    """Resize validation images to this shorter side in pixels (None = full size); also what
    ``agmm eval``, ``predict`` and ``pseudo-labels`` feed the model (0 there = full size too)."""
    num_workers: int = 2
    """DataLoader worker processes per training process."""


@dataclass
class ModelConfig:
    name: str = "deeplabv3plus"
    """A key of ``agmm.models.MODELS``: deeplabv3plus, vit, or a library family (smp,
    torchvision, transformers; docs/byom.md)."""
    arch: str | None = None
    """The architecture within a library family (smp: deeplabv3plus, unet, fpn, ...; torchvision:
    deeplabv3, fcn, lraspp; transformers: segformer, upernet); None = the family's default. Must
    be null for deeplabv3plus and vit."""
    backbone: str = "resnet101"
    pretrained: bool | str = True
    """True = ImageNet weights by timm name (download), ``imagenet`` = from an installed registry
    package where one ships them (tf_efficientnet_lite0/1/2; timm's download otherwise), another
    string = local weights file, False = from scratch."""
    output_stride: int | None = 8
    """8 or 16 for DeepLabV3+ (the paper: 8 on PASCAL); None for a ViT (its patch size)."""
    cls_head: bool | None = None
    """Classification head for online CAMs; None = on exactly when supervision is tags."""
    model_args: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the model builder."""
    fast_depthwise: bool = True
    """Depthwise convolutions (EfficientNet) on the CPU fast path of ``agmm.models.depthwise``:
    float32 and channels_last whatever the autocast dtype, dilation as space-to-batch; the same
    maths, 1.2-1.3x faster CPU steps with bf16 + channels_last (bench/train_speed.py). False
    keeps the stock modules (for comparisons)."""


# What ``loss.variant=paper`` resets: the GMM knobs whose library defaults differ from the
# paper's equations (chosen by the CamVid benchmark, docs/method.md), at the paper's values.
PAPER_LOSS_SETTINGS = {
    "sigma_prior": 0.0,
    "class_prior_momentum": 0.0,
    "self_target": "gmm",
    "self_loss": "bce",
    "self_classes": "present",
    "oem_steps": 1,
}


@dataclass
class LossConfig:
    """Keyword arguments of :class:`agmm.gmm.AGMMLoss` (see ``loss_kwargs``) plus engine switches."""

    enabled: bool = True
    """False trains with L_seg only (and L_cls for tags): the paper's baseline column."""
    variant: Literal["library", "paper"] = "library"
    """paper = the paper's GMM: the knobs of ``PAPER_LOSS_SETTINGS`` take the paper's values,
    whatever they are set to; library = the values below (docs/method.md lists the differences)."""
    embed_dim: int = 64
    """C' of the squeeze conv; the paper's code uses 64."""
    distance: Literal["l1", "sqeuclid"] = "sqeuclid"
    """sqeuclid (default: as accurate as l1 on CamVid and cheaper, docs/BENCHMARKS.md); l1 = the CVPR'23 code."""
    sigma_floor: float = 0.05
    """Not in the paper: AGMMLoss's floor, keeps one-pixel classes from dividing by zero."""
    oem_steps: int = 0
    """Online-EM M-steps after the E-step. The paper: 1; the library: 0, because on CamVid points
    one hard M-step lowered val mIoU by 3.7 and G's quality (docs/method.md)."""
    responsibilities: Literal["soft", "hard"] = "hard"
    """hard = arg-max of G_old ("x in G_i^old", Eq. 5-6); soft = G_old as weights (docs/method.md)."""
    stop_gradient: bool = False
    use_self: bool = True
    use_weak: bool = True
    use_con: bool = True
    con: Literal["eq14", "eq13"] = "eq14"
    """eq14 = AGMM++'s pixel-to-centre contrast; eq13 = the CVPR'23 centre-to-centre ablation."""
    pseudo_labels: Literal["gmm", "assign"] = "gmm"
    """gmm = soft G (Eq. 4); assign = hard d < sigma labels (Eq. 18, Table 15 ablation)."""
    self_resolution: Literal["feature", "label"] = "feature"
    """Grid of L_self: feature (P pooled to G's grid; AGMMLoss's default, 16x cheaper at stride 4,
    see docs/BENCHMARKS.md) or label (G upsampled to every pixel, Eq. 11 literally)."""
    self_pooling: Literal["probs", "logits"] = "logits"
    """With self_resolution=feature: P on the grid is the softmax of the cell's mean logit (logits:
    no full-resolution softmax, 10x cheaper at K = 150, the same CamVid points accuracy over 5
    seeds; docs/training.md "Speed") or the cell's mean softmax (probs, before 2026-11-30)."""
    self_classes: Literal["present", "all"] = "present"
    """Classes of L_self: present (K_img, DESIGN.md) or all (absent classes pushed to P = 0)."""
    posterior: bool = False
    """G = mixture posteriors g_k / sum_j g_j instead of Eq. 4's g_k (not in the paper)."""
    sigma_prior: float = 4.0
    """Shrink each class's variance toward the image's pooled one with a prior worth this many
    labeled pixels; 0 = Eq. 2 per class (the paper). The library's 4 doubles G's quality on CamVid
    points (docs/method.md)."""
    class_prior_momentum: float = 0.0
    """> 0: running class centres/variances (EMA momentum) give the image's classes that have no
    labeled pixel in the crop a component; 0 = the paper (not in the paper, docs/method.md)."""
    self_target: Literal["gmm", "gmm_x_p", "gmm_x_p_within"] = "gmm_x_p"
    """L_self's target: gmm = G_new (Eq. 11, the paper); gmm_x_p (the library's) = G_new x
    detached P, normalised over the present classes (docs/method.md)."""
    self_loss: Literal["bce", "ce"] = "bce"
    """How L_self transfers its target to P: bce (Eq. 11, soft, every position) or ce (hard
    cross-entropy on the target's arg-max where it reaches ``self_threshold``; not in the paper)."""
    self_threshold: float = 0.8
    """self_loss=ce: the target confidence a position needs to be pseudo-labeled."""
    seg_reduction: Literal["pixel", "class"] = "pixel"
    """L_seg averaged over labeled pixels (Eq. 10) or class-balanced (each labeled class's mean, averaged)."""
    self_reduction: Literal["pixel", "class"] = "pixel"
    """L_self averaged over (pixel, class) pairs (Eq. 11) or class-balanced (per image and class,
    positive and negative parts averaged separately)."""
    lambda_seg: float = 1.0
    lambda_gmm: float = 1.0
    lambda_self: float = 1.0
    lambda_weak: float = 1.0
    lambda_con: float = 1.0
    lambda_cls: float = 1.0
    gmm_warmup_steps: int = 0
    """Steps trained with L_seg only (and L_cls) before the GMM and its losses join; after the
    CAM warm-up for tags. Not in the paper (which starts from ImageNet features): 0 = from step 1."""
    cam_warmup_steps: int = 2000
    """Tags only: classification-only steps before CAM seeds feed L_seg and the GMM. Not in the
    paper (it follows ToCo): ToCo's 2000 of 20000 iterations."""
    cam_args: dict[str, Any] = field(default_factory=dict)
    """Tags only: keyword arguments of ``agmm.seeds.cam.cam_seeds`` (high, low, margin, refine)."""

    def loss_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``AGMMLoss`` (everything but the engine switches)."""
        engine_only = {"enabled", "variant", "cam_warmup_steps", "gmm_warmup_steps", "cam_args"}
        kwargs = {k: v for k, v in dataclasses.asdict(self).items() if k not in engine_only}
        kwargs["use_gmm"] = self.enabled
        if self.variant == "paper":
            kwargs.update(PAPER_LOSS_SETTINGS)
        return kwargs


@dataclass
class TrainConfig:
    steps: int = 20000
    """Not in the paper's main text (its supplement is not public): a TEL/ToCo-scale schedule."""
    batch_size: int = 16
    """Images per optimiser step over all processes (each process takes batch_size / world)."""
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 1e-3
    head_lr_mult: float = 10.0
    """lr multiplier of the newly added layers (decoder, heads, GMM squeeze conv)."""
    momentum: float = 0.9
    weight_decay: float = 1e-4
    """Not in the paper: DeepLab's usual 1e-4 for SGD (ViT configs use the paper's 0.01)."""
    betas: tuple[float, float] = (0.9, 0.999)
    poly_power: float = 0.9
    warmup_steps: int = 0
    """Linear lr warm-up steps before the poly decay (0 = none, as in the paper)."""
    grad_clip: float | None = None
    ema_decay: float = 0.0
    """Exponential moving average of the segmenter's weights (timm's ModelEmaV3 with its warm-up:
    the decay grows as 1 - (1 + step)^(-2/3) up to this value); 0 = off. When on, validation and
    the checkpoint's ``model`` (what eval / predict / export use) are the averaged weights. Not in
    the paper: it steadies short from-scratch runs (docs/BENCHMARKS.md)."""
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    """Mixed precision of the training step: auto = bf16 where the device computes it natively
    (CUDA with bf16; CPUs with AVX-512 BF16 or AMX), else float32; fp16 is CUDA only. The GMM
    always runs in float32 (its squeeze projection, a layer of the network, in the autocast
    dtype). Validation and eval stay float32."""
    channels_last: bool | Literal["auto"] = "auto"
    """Model and images in NHWC memory format. auto = on a CPU (faster in every setting
    bench/train_speed.py measured there: ResNet-18 and EfficientNet-Lite0 DeepLabV3+, fp32 and
    bf16, 1.03-1.11x; a ViT-Tiny the same), off on GPUs (not measured there); or true / false."""
    device: str = "auto"
    """auto = this process's CUDA device (LOCAL_RANK) if any, else CPU; or e.g. "cpu", "cuda"."""
    num_threads: int | None = None
    """CPU threads per process (None = torch's default; torchrun sets OMP_NUM_THREADS=1). On a
    shared or busy CPU, 1 thread per process can be several times faster than oversubscribing."""
    sync_bn: bool = True
    """SyncBatchNorm when training on several GPUs."""
    log_every: int = 20
    val_every: int = 2000
    """Steps between validations (0 = only at the end)."""
    validate: bool = True
    """False skips validation altogether (e.g. for quick experiments without a val split)."""
    checkpoint_every: int = 1000
    keep_checkpoints: int = 0
    """Also keep step_<N>.pt for the newest N checkpoints (0 = only last.pt)."""
    max_skipped_steps: int = 20
    """Stop with an error after this many steps whose loss was not finite."""
    track_pseudo_labels: bool = True
    """Accumulate the mIoU of the GMM pseudo labels on training batches when masks are known."""
    tensorboard: bool = True
    progress_bar: bool = True


@dataclass
class EvalConfig:
    """The test protocol, one for both uses: validation during training, and ``agmm eval``,
    ``predict`` and ``pseudo-labels``, which read it from the checkpoint (``eval.flip=true`` and
    the like override it there as in ``agmm train``). The images' size is ``data.eval_resize``."""

    scales: list[float] = field(default_factory=lambda: [1.0])
    """Input scales whose softmax outputs are averaged, e.g. [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]."""
    flip: bool = False
    """Also average the horizontally flipped images' outputs."""
    sliding: dict[str, Any] | None = None
    """Sliding-window inference, e.g. ``{crop: [512, 1024], stride: [341, 683]}`` (None = whole
    image); a crop alone (``{crop: 512}``) overlaps the windows by a third."""
    crf: bool | dict[str, Any] = False
    """Dense-CRF post-processing: True = DeepLab's defaults, or a mapping of ``crf_refine`` options."""
    batch_size: int = 1
    """Images per forward pass; images of different sizes are padded (1 = exact for every model)."""
    max_images: int | None = None
    """Validate on the first N images only (None = the whole split). Validation during training
    only: ``agmm eval`` scores the whole split unless given ``--max-images N``."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    output_dir: str = "runs/default"
    name: str | None = None
    """A label for reports and logs (defaults to the config file's name)."""

    @property
    def use_cls_head(self) -> bool:
        if self.model.cls_head is None:
            return self.data.supervision == "tags"
        return self.model.cls_head


# ---------------------------------------------------------------------------------------------
# Loading


def available_configs() -> list[str]:
    """Names of the shipped configs, e.g. ``camvid/points``."""
    return sorted(
        str(p.relative_to(CONFIG_DIR).with_suffix(""))
        for p in CONFIG_DIR.rglob("*.yaml")
        if not any(part.startswith("_") for part in p.relative_to(CONFIG_DIR).parts)
    )


def resolve_config_path(path_or_name: str | Path) -> Path:
    """A YAML path as given, or a shipped config name (``camvid/points``, ``configs/voc/tags.yaml``)."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    name = str(path_or_name).removesuffix(".yaml").removesuffix(".yml")
    name = name.removeprefix("configs/")
    shipped = CONFIG_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config {str(path_or_name)!r} is neither a file nor a shipped config; "
        f"shipped configs: {', '.join(available_configs())}"
    )


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The merged dict of ``path`` and its ``_base_`` files (bases first, then this file)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: _base_ includes form a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        candidate = path.parent / base
        base_path = candidate if candidate.is_file() else resolve_config_path(base)
        merged = _deep_merge(merged, _read_yaml(base_path, (*chain, path)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``: mappings merge key by key, except an empty mapping, which clears
    (``data.weak_label_args={}`` drops the base file's arguments instead of keeping them)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(overrides: typing.Iterable[str]) -> dict:
    """``["train.steps=20", "loss.distance=sqeuclid"]`` -> nested dict; values by YAML rules."""
    tree: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. train.steps=20)"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {error}") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return tree


def load_config(
    path_or_name: str | Path | None = None, overrides: typing.Iterable[str] = ()
) -> Config:
    """Read a config (shipped name or YAML path; None = defaults), apply overrides, validate.

    Paths are not checked here (a config can be read on a machine without its data); call
    :func:`validate_paths` before training, as :func:`agmm.engine.train.train` does.
    """
    data: dict = {}
    name = None
    if path_or_name is not None:
        path = resolve_config_path(path_or_name)
        data = _read_yaml(path)
        name = _config_name(path)
    data = _deep_merge(data, parse_overrides(overrides))
    cfg = config_from_dict(data)
    if cfg.name is None:
        cfg.name = name
    return cfg


def apply_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides applied and validated as by
    :func:`load_config` (e.g. a checkpoint's config with ``eval.flip=true``)."""
    data = _deep_merge(dataclasses.asdict(cfg), parse_overrides(overrides))
    return config_from_dict(data)


def _config_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(CONFIG_DIR).with_suffix(""))
    except ValueError:
        return path.stem


def config_from_dict(data: dict) -> Config:
    """Build and validate a :class:`Config` from a plain dict (e.g. one stored in a checkpoint)."""
    cfg = _build(Config, data, "")
    validate(cfg)
    return cfg


def dump_config(cfg: Config) -> str:
    """The config as YAML text, every key written out (what the run actually used)."""
    return yaml.safe_dump(_plain(dataclasses.asdict(cfg)), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Validation


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and types against its fields."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys"
            f"{' of ' + where if prefix else ''}: {', '.join(names)}"
        )
    kwargs = {key: _coerce(value, hints[key], f"{prefix}{key}") for key, value in data.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (ints accepted for floats), or ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, key)
            except ConfigError as error:
                errors.append(error)
        raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_describe(value)}")
    if origin is Literal:
        if value is False and "off" in args:
            value = "off"  # YAML 1.1 reads a bare `off` (train.amp=off) as false
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list | tuple):
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is tuple:
        if isinstance(value, list | tuple) and len(value) == len(args):
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - a field type this function does not know
        raise TypeError(f"config field {key} has unsupported type {hint}")
    raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_describe(value)}")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {len(typing.get_args(hint))} numbers"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return "a mapping"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def validate(cfg: Config) -> None:
    """Checks across fields (types were checked while building)."""
    positive = {
        "data.crop_size": cfg.data.crop_size,
        "train.steps": cfg.train.steps,
        "train.batch_size": cfg.train.batch_size,
        "train.log_every": cfg.train.log_every,
        "train.checkpoint_every": cfg.train.checkpoint_every,
        "loss.embed_dim": cfg.loss.embed_dim,
        "eval.batch_size": cfg.eval.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    non_negative = {
        "train.val_every": cfg.train.val_every,
        "train.warmup_steps": cfg.train.warmup_steps,
        "train.keep_checkpoints": cfg.train.keep_checkpoints,
        "train.max_skipped_steps": cfg.train.max_skipped_steps,
        "data.num_workers": cfg.data.num_workers,
        "train.num_threads": cfg.train.num_threads or 0,
        "loss.oem_steps": cfg.loss.oem_steps,
        "loss.cam_warmup_steps": cfg.loss.cam_warmup_steps,
        "loss.gmm_warmup_steps": cfg.loss.gmm_warmup_steps,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {cfg.train.ema_decay}")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr: must be positive, got {cfg.train.lr}")
    low, high = cfg.data.scale_range
    if not 0 < low <= high:
        raise ConfigError(f"data.scale_range: need 0 < low <= high, got {[low, high]}")
    if not cfg.eval.scales or min(cfg.eval.scales) <= 0:
        raise ConfigError(f"eval.scales: need positive scales, got {cfg.eval.scales}")
    sliding = cfg.eval.sliding
    if sliding and ("crop" not in sliding or set(sliding) - {"crop", "stride"}):
        raise ConfigError(
            f"eval.sliding: expected {{crop: [H, W], stride: [H, W]}} (stride optional), "
            f"got {sliding}"
        )
    device = cfg.train.device
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"train.device: {device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    if cfg.data.supervision == "tags" and cfg.model.cls_head is False:
        raise ConfigError("model.cls_head: image-tag supervision needs the classification head")


def validate_paths(cfg: Config) -> None:
    """Check that the files and folders the config names exist (done before training starts)."""
    if cfg.data.name != "synthetic":
        if cfg.data.root is None:
            raise ConfigError(f"data.root: dataset {cfg.data.name!r} needs a root folder")
        if not Path(cfg.data.root).expanduser().is_dir():
            raise ConfigError(f"data.root: folder {cfg.data.root} does not exist")
    weak_dirs = cfg.data.weak_label_dir
    if isinstance(weak_dirs, str):
        weak_dirs = {"": weak_dirs}
    for kind, folder in (weak_dirs or {}).items():
        path = Path(folder).expanduser()
        tags = kind == "tags" or (not kind and cfg.data.supervision == "tags")
        tag_file = tags and path.is_file()  # cls_labels.npy, tags.json or a list file
        if not path.is_dir() and not tag_file:
            key = f"data.weak_label_dir.{kind}" if kind else "data.weak_label_dir"
            raise ConfigError(f"{key}: folder {folder} does not exist")
    if (
        isinstance(cfg.model.pretrained, str)
        and cfg.model.pretrained != "imagenet"
        and not Path(cfg.model.pretrained).expanduser().is_file()
    ):
        raise ConfigError(f"model.pretrained: weights file {cfg.model.pretrained} does not exist")
