"""Configs: every shipped file parses and builds; bad keys, types, values and paths are named."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from agmm.config import (
    Config,
    LossConfig,
    apply_overrides,
    available_configs,
    config_from_dict,
    dump_config,
    load_config,
    parse_overrides,
    validate_paths,
)
from agmm.errors import ConfigError

SHIPPED = available_configs()
_built_models: dict = {}


def test_the_paper_settings_and_cpu_presets_are_shipped():
    expected = {
        *(f"voc/{k}" for k in ("tags", "points", "scribbles", "boxes")),
        *(f"voc/{k}_vit" for k in ("tags", "points", "scribbles", "boxes")),
        "coco/tags",
        *(f"cityscapes/clicks{n}" for n in (20, 50, 100)),
        *(f"ade20k/blocks{n}" for n in (10, 20, 50)),
        *(f"camvid/{k}" for k in ("points", "scribbles", "blocks", "boxes", "tags", "full")),
        "synthetic/demo",
    }
    assert expected <= set(SHIPPED)


def test_camvid_presets_balance_l_seg_and_the_paper_configs_do_not():
    """CamVid's CPU presets average L_seg per class (docs/BENCHMARKS.md); the paper's stay per pixel."""
    from agmm.gmm.build import build_loss

    for kind in ("points", "scribbles", "blocks", "boxes", "tags", "full"):
        assert load_config(f"camvid/{kind}").loss.seg_reduction == "class"
    for name in ("voc/points", "cityscapes/clicks20", "synthetic/demo"):
        assert load_config(name).loss.seg_reduction == "pixel"

    class Stub:  # build_loss only needs the decoder's channels
        feature_channels = 8

    loss = build_loss(load_config("camvid/points"), Stub(), 11)
    assert loss.seg_reduction == "class" and loss.self_reduction == "pixel"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_parses_and_builds_its_model(name):
    from agmm.models.build import build_segmenter

    cfg = load_config(name)
    assert cfg.name == name
    assert config_from_dict(__import__("dataclasses").asdict(cfg)) == cfg
    num_classes = 3
    key = (cfg.model.name, cfg.model.backbone, cfg.model.output_stride, cfg.use_cls_head,
           tuple(sorted(cfg.model.model_args.items())))  # fmt: skip
    if key not in _built_models:  # building R101 / ViT-B once per kind keeps this test fast
        model = build_segmenter(cfg, num_classes, pretrained=False)
        assert model.feature_channels > 0
        _built_models[key] = True
    # Paths are checked only where the data exists on this machine.
    if cfg.data.name == "synthetic":
        validate_paths(cfg)


def test_camvid_presets_validate_against_the_real_dataset(camvid):
    for name in ("camvid/points", "camvid/scribbles", "camvid/blocks", "camvid/full"):
        validate_paths(load_config(name, [f"data.root={camvid}"]))


def test_paper_recipe_is_the_default():
    cfg = Config()
    assert (cfg.model.backbone, cfg.model.output_stride) == ("resnet101", 8)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.head_lr_mult) == ("sgd", 1e-3, 10.0)
    assert (cfg.train.momentum, cfg.train.poly_power, cfg.train.batch_size) == (0.9, 0.9, 16)
    assert cfg.data.crop_size == 321
    assert not cfg.loss.stop_gradient and cfg.loss.use_self and cfg.loss.use_weak
    assert cfg.loss.use_con
    # the library's GMM departs from the paper's in a few knobs; one switch restores them
    assert cfg.loss.oem_steps == 0
    assert Config(loss=LossConfig(variant="paper")).loss.loss_kwargs()["oem_steps"] == 1


def test_vit_settings_use_adamw_recipe():
    cfg = load_config("voc/points_vit")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("adamw", 6e-5, 0.01)
    assert cfg.data.crop_size == 448 and cfg.model.name == "vit"


def test_loss_config_mirrors_agmm_loss_keyword_arguments():
    from agmm.gmm.loss import AGMMLoss

    parameters = inspect.signature(AGMMLoss.__init__).parameters
    accepted = {n for n, p in parameters.items() if p.kind == p.KEYWORD_ONLY}
    kwargs = LossConfig(variant="paper").loss_kwargs()
    assert set(kwargs) <= accepted
    assert accepted - set(kwargs) <= {"ignore_index"}
    # AGMMLoss's own defaults are the paper's GMM = the config's loss.variant=paper
    for name, value in kwargs.items():  # defaults agree, except the engine's own switch
        if name != "use_gmm":
            assert parameters[name].default == value, name


def test_loss_enabled_false_means_lseg_only():
    assert LossConfig(enabled=False).loss_kwargs()["use_gmm"] is False


def test_overrides_are_parsed_by_yaml_rules():
    cfg = load_config(
        "synthetic/demo",
        ["train.steps=20", "loss.distance=sqeuclid", "train.lr=1e-3", "eval.scales=[0.5, 1.0]",
         "model.pretrained=false", "train.grad_clip=null"],
    )  # fmt: skip
    assert cfg.train.steps == 20 and isinstance(cfg.train.steps, int)
    assert cfg.loss.distance == "sqeuclid"
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.eval.scales == [0.5, 1.0]
    assert cfg.model.pretrained is False and cfg.train.grad_clip is None
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_mapping_overrides_merge_and_an_empty_mapping_clears():
    merged = load_config("synthetic/demo", ["model.model_args={aspp_channels: 32}"])
    assert merged.model.model_args == {"aspp_channels": 32, "decoder_channels": 64}
    cleared = load_config("synthetic/demo", ["data.supervision=tags", "data.weak_label_args={}"])
    assert cleared.data.weak_label_args == {}


def test_overrides_apply_to_a_loaded_config_as_to_a_file():
    cfg = load_config("cityscapes/clicks20")
    tested = apply_overrides(cfg, ["eval.flip=true", "eval.sliding={crop: 512}"])
    assert tested == load_config(
        "cityscapes/clicks20", ["eval.flip=true", "eval.sliding={crop: 512}"]
    )
    assert tested.eval.sliding == {"crop": 512, "stride": [512, 512]}  # mappings merge
    assert cfg.eval.sliding["crop"] == [768, 768]
    with pytest.raises(ConfigError, match=r"unknown config key 'eval.flipp'"):
        apply_overrides(cfg, ["eval.flipp=true"])


def test_base_include_is_merged_under_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {steps: 5, lr: 0.5}\nseed: 3\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain: {steps: 7}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.train.steps, cfg.train.lr, cfg.seed) == (7, 0.5, 3)
    assert cfg.name == "child"


def test_dump_config_round_trips(tmp_path):
    cfg = load_config("camvid/points", ["train.steps=33"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    again.name = cfg.name
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stepz=3"], r"unknown config key 'train.stepz'.*steps"),
        (["trian.steps=3"], r"unknown config key 'trian'"),
        (["train.steps=many"], r"train.steps: expected int, got str 'many'"),
        (["train.steps=2.5"], r"train.steps: expected int"),
        (["data.hflip=3"], r"data.hflip: expected bool, got int 3"),
        (["data.hflip=yes please"], r"data.hflip: expected bool"),
        (["loss.distance=cosine"], r"loss.distance: 'cosine' is not one of 'l1', 'sqeuclid'"),
        (["data.supervision=polygons"], r"data.supervision: 'polygons' is not one of"),
        (["data.scale_range=[1.0]"], r"data.scale_range: expected a list of 2 numbers"),
        (["train.steps=0"], r"train.steps: must be positive"),
        (["train.device=gpu0"], r"train.device"),
        (["loss=3"], r"loss: expected a mapping"),
        (["train.steps"], r"not of the form key=value"),
        (["eval.sliding={size: 512}"], r"eval.sliding: expected \{crop: \[H, W\]"),
        (["eval.sliding={crop: 512, overlap: 0.5}"], r"eval.sliding: expected"),
    ],
)
def test_bad_configs_fail_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("synthetic/demo", overrides)


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  backbone: resnet18\n  dropout: 0.5\n")
    with pytest.raises(ConfigError, match=r"model.dropout"):
        load_config(path)


def test_missing_paths_are_named_by_validate_paths(tmp_path):
    cfg = load_config("camvid/points", [f"data.root={tmp_path}/absent"])
    with pytest.raises(ConfigError, match=r"data.root: folder .*absent does not exist"):
        validate_paths(cfg)
    cfg = load_config(
        "camvid/points", [f"data.root={tmp_path}", f"data.weak_label_dir={tmp_path}/w"]
    )
    with pytest.raises(ConfigError, match=r"data.weak_label_dir: folder .*w does not exist"):
        validate_paths(cfg)
    (tmp_path / "cls_labels.npy").write_bytes(b"")  # a tag file stands in for a folder ...
    validate_paths(
        load_config(
            "camvid/tags",
            [f"data.root={tmp_path}", f"data.weak_label_dir={tmp_path}/cls_labels.npy"],
        )
    )
    cfg = load_config(  # ... but not for weak labels that are PNGs
        "camvid/points", [f"data.root={tmp_path}", f"data.weak_label_dir={tmp_path}/cls_labels.npy"]
    )
    with pytest.raises(ConfigError, match=r"data.weak_label_dir: folder .*cls_labels.npy"):
        validate_paths(cfg)
    cfg = load_config(
        "camvid/points", [f"data.root={tmp_path}", f"model.pretrained={tmp_path}/r.pth"]
    )
    with pytest.raises(ConfigError, match=r"model.pretrained: weights file .*r.pth"):
        validate_paths(cfg)


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"camvid/points"):
        load_config("camvid/pointz")


def test_shipped_config_found_by_name_or_path():
    by_name = load_config("camvid/points")
    by_path = load_config(Path(__file__).parents[1] / "src/agmm/configs/camvid/points.yaml")
    by_prefixed = load_config("configs/camvid/points.yaml")
    assert by_name == by_path == by_prefixed


def test_loss_variant_paper_is_one_switch_back_to_the_papers_gmm():
    from agmm.config import PAPER_LOSS_SETTINGS
    from agmm.gmm.loss import AGMMLoss

    library = load_config("camvid/points").loss.loss_kwargs()
    paper = load_config("camvid/points", ["loss.variant=paper", "loss.sigma_prior=9"]).loss
    kwargs = paper.loss_kwargs()
    assert {k: kwargs[k] for k in PAPER_LOSS_SETTINGS} == PAPER_LOSS_SETTINGS
    # the paper's values are AGMMLoss's own constructor defaults
    criterion = AGMMLoss(in_channels=8, num_classes=3)
    assert all(getattr(criterion, k) == v for k, v in PAPER_LOSS_SETTINGS.items())
    # everything else is left as configured
    assert {k: v for k, v in kwargs.items() if k not in PAPER_LOSS_SETTINGS} == {
        k: v for k, v in library.items() if k not in PAPER_LOSS_SETTINGS
    }
