"""`agmm eval | predict | pseudo-labels | export | report` on a real (tiny) checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from agmm.cli import main

DATA = "data.dataset_args={num_images: 3, image_size: [32, 48], num_classes: 4, max_objects: 2}"


def make_checkpoint(path, overrides=(), num_classes=4):
    """A checkpoint of the synthetic demo config (Lite0 DeepLabV3+, ImageNet backbone)."""
    from agmm.config import load_config
    from agmm.gmm.build import build_loss
    from agmm.models.build import build_segmenter
    from agmm.runtime.checkpoint import config_dict, save_checkpoint

    cfg = load_config("synthetic/demo", [DATA, "model.output_stride=16", *overrides])
    torch.manual_seed(0)
    model = build_segmenter(cfg, num_classes, pretrained=False).eval()
    loss_module = build_loss(cfg, model, num_classes)
    save_checkpoint(
        {
            "format": "agmm-checkpoint-v1",
            "step": 1,
            "model": model.state_dict(),
            "loss_module": loss_module.state_dict(),
            "config": config_dict(cfg),
            "classes": ["background", "a", "b", "c"][:num_classes],
            "num_classes": num_classes,
            "palette": [[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]][:num_classes],
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")


def test_eval_prints_a_table_and_writes_json_and_csv(tmp_path, checkpoint, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "background" in printed
    metrics = json.loads(out.read_text())
    assert len(metrics["per_class_iou"]) == 4 and "background" in metrics["per_class_iou"]
    assert metrics["num_images"] == 3 and 0 <= metrics["miou"] <= 1
    args = ["eval", "--checkpoint", str(checkpoint), "--quiet", "eval.flip=true", "eval.sliding={crop: 32}"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "m.csv"), "--max-images", "2"]) == 0
    assert "(2 images)" in capsys.readouterr().out
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0] == "class,iou" and rows[-2].startswith("miou,")


def test_predict_then_eval_of_the_saved_pngs_gives_the_same_miou(tmp_path, checkpoint, capsys):
    from agmm.config import load_config
    from agmm.data import build_dataset

    cfg = load_config("synthetic/demo", [DATA])
    dataset = build_dataset("synthetic", root=None, split="val", **cfg.data.dataset_args)
    images = tmp_path / "images"
    images.mkdir()
    for index, name in enumerate(dataset.names):
        Image.fromarray(dataset.read_raw(index)["image"]).save(images / f"{name}.png")
    preds = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), str(images), "--out", str(preds), "--probs", "--quiet"]) == 0  # fmt: skip
    assert len(list(preds.glob("*.png"))) == 3 and len(list(preds.glob("*.npy"))) == 3
    with Image.open(next(preds.glob("*.png"))) as mask:
        assert mask.mode == "P" and mask.size == (48, 32)
    base = ["eval", "--checkpoint", str(checkpoint), "--quiet", "--out"]
    assert main([*base, str(tmp_path / "model.json")]) == 0
    assert main([*base, str(tmp_path / "pngs.json"), "--predictions", str(preds)]) == 0
    from_model = json.loads((tmp_path / "model.json").read_text())
    from_pngs = json.loads((tmp_path / "pngs.json").read_text())
    assert from_pngs["miou"] == pytest.approx(from_model["miou"])
    assert from_pngs["confusion"] == from_model["confusion"]


def test_pseudo_labels_are_written_for_the_training_split(tmp_path, checkpoint, capsys):
    out = tmp_path / "stage2"
    assert main(["pseudo-labels", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert len(list(out.glob("*.png"))) == 3
    printed = capsys.readouterr().out
    assert "GMM G_new" in printed and "segmenter P" in printed
    summary = json.loads((out / "pseudo_labels.json").read_text())
    assert summary["num_images"] == 3
    assert 0 <= summary["quality"]["gmm_new_miou"] <= 1
    assert summary["quality"]["weak_miou"] == pytest.approx(1.0)  # simulated clicks are exact
    # the second stage reads them back as weak labels
    from agmm.config import load_config
    from agmm.data import build_dataset

    cfg = load_config("synthetic/demo", [DATA])
    stage2 = build_dataset(
        "synthetic",
        root=None,
        split="train",
        supervision="blocks",
        weak_label_dir=out,
        **cfg.data.dataset_args,
    )
    assert (stage2[0]["weak_label"] != 255).float().mean() > 0.99


def test_export_onnx_from_a_checkpoint(tmp_path, checkpoint, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--size", "32", "48"]) == 0  # fmt: skip
    assert out.is_file() and "max |difference|" in capsys.readouterr().out


def test_checkpoint_for_another_number_of_classes_is_named(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "three.pt", num_classes=3)
    assert main(["eval", "--checkpoint", str(checkpoint), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "CheckpointError" in error and "three.pt" in error and "3 classes" in error


def test_unreadable_image_is_named(tmp_path, checkpoint, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    code = main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "broken.png"), "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 1 and "broken.png" in capsys.readouterr().err


def test_report_command(tmp_path, capsys):
    (tmp_path / "result.json").write_text(json.dumps({"miou": 0.25}))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), np.uint8)).save(
        tmp_path / "panels.png"
    )
    assert main(["report", str(tmp_path)]) == 0
    assert "base64" in (tmp_path / "report.html").read_text()


def test_run_pictures_and_report_from_a_checkpoint(tmp_path, checkpoint, capsys):
    from agmm.viz import draw_run_pictures

    run = tmp_path / "run"
    written = draw_run_pictures(
        checkpoint, run / "pictures", num_images=2, tsne_points=200, num_threads=1
    )
    assert [p.name for p in written] == ["panels.png", "tsne.png"]
    for path in written:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").read_text().count("data:image/png;base64") == 2


@pytest.fixture(scope="module")
def resizing_checkpoint(tmp_path_factory):
    """A checkpoint whose config evaluates at half size (data.eval_resize=16 for 32 x 48 images)."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt16") / "last.pt", ["data.eval_resize=16"])


def synthetic_dataset(split="train", **kwargs):
    from agmm.config import load_config
    from agmm.data import build_dataset

    cfg = load_config("synthetic/demo", [DATA])
    return build_dataset("synthetic", root=None, split=split, **cfg.data.dataset_args, **kwargs)


def test_pseudo_labels_are_written_at_each_images_own_size(tmp_path, resizing_checkpoint, capsys):
    out = tmp_path / "stage2"
    assert main(["pseudo-labels", "--checkpoint", str(resizing_checkpoint), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    for path in out.glob("*.png"):
        with Image.open(path) as label:
            assert label.size == (48, 32)  # (W, H) of the images, not of data.eval_resize
    summary = json.loads((out / "pseudo_labels.json").read_text())
    assert summary["resize"] == 16 and summary["split"] == "train"
    assert summary["quality"]["weak_miou"] == pytest.approx(1.0)  # clicks from the same masks
    stage2 = synthetic_dataset(supervision="blocks", weak_label_dir=out)
    assert tuple(stage2[0]["weak_label"].shape) == (32, 48)  # the next stage reads them


def test_predict_honours_eval_resize_and_round_trips_through_eval(
    tmp_path, resizing_checkpoint, capsys
):
    dataset = synthetic_dataset(split="val")
    images = tmp_path / "images"
    images.mkdir()
    for index, name in enumerate(dataset.names):
        Image.fromarray(dataset.read_raw(index)["image"]).save(images / f"{name}.png")
    preds, native = tmp_path / "pred", tmp_path / "native"
    checkpoint = ["--checkpoint", str(resizing_checkpoint), "--quiet"]
    assert main(["predict", *checkpoint, str(images), "--out", str(preds), "--probs"]) == 0
    assert main(["predict", *checkpoint, str(images), "--out", str(native), "--probs", "data.eval_resize=0"]) == 0  # fmt: skip
    with Image.open(next(preds.glob("*.png"))) as mask:
        assert mask.size == (48, 32)  # written at the image's own size
    resized_probs = np.load(next(preds.glob("*.npy")))
    assert resized_probs.shape[-2:] == (32, 48)
    # the model saw the image at data.eval_resize, not at its own size
    assert not np.allclose(resized_probs, np.load(native / next(preds.glob("*.npy")).name))
    base = ["eval", *checkpoint, "--out"]
    assert main([*base, str(tmp_path / "model.json")]) == 0
    assert main([*base, str(tmp_path / "pngs.json"), "--predictions", str(preds)]) == 0
    from_model = json.loads((tmp_path / "model.json").read_text())
    from_pngs = json.loads((tmp_path / "pngs.json").read_text())
    assert from_pngs["num_images"] == from_model["num_images"] == 3
    assert from_pngs["miou"] == pytest.approx(from_model["miou"], abs=0.1)


def test_eval_json_records_its_split_and_resize(tmp_path, resizing_checkpoint, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(resizing_checkpoint), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    assert metrics["split"] == "val" and metrics["resize"] == 16
    assert main(["eval", "--checkpoint", str(resizing_checkpoint), "--out", str(out), "--quiet", "data.eval_resize=null"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["resize"] is None


def test_failed_pseudo_labels_leave_no_output_folder(tmp_path, checkpoint, capsys, monkeypatch):
    from agmm.errors import DataError
    from agmm.eval import pseudo_labels

    def unreadable(*args, **kwargs):
        raise DataError("images/train/00002.png: cannot read image (truncated)")

    monkeypatch.setattr(pseudo_labels, "pseudo_label_quality", unreadable)
    out = tmp_path / "stage2"
    assert main(["pseudo-labels", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet"]) == 1  # fmt: skip
    assert "cannot read image" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the labels written so far nor a staging folder


# ---------------------------------------------------------------------------------------------
# the checkpoint's config and key=value overrides


@pytest.fixture(scope="module")
def flip_sliding_checkpoint(tmp_path_factory):
    """A checkpoint whose training validated with flips and a sliding window."""
    overrides = ["eval.flip=true", "eval.sliding={crop: [24, 32], stride: [16, 16]}"]
    return make_checkpoint(tmp_path_factory.mktemp("ckpt_flip") / "last.pt", overrides)


def eval_json(tmp_path, checkpoint, *argv, name="metrics.json"):
    out = tmp_path / name
    assert main(["eval", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet", *argv]) == 0  # fmt: skip
    return json.loads(out.read_text())


def test_eval_scores_with_the_protocol_validation_used(
    tmp_path, flip_sliding_checkpoint, capsys, monkeypatch
):
    from agmm.eval import inference
    from agmm.models.build import load_model

    calls = []
    real_evaluate = inference.evaluate

    def spy(model, dataset, **kwargs):
        calls.append(kwargs)
        return real_evaluate(model, dataset, **kwargs)

    monkeypatch.setattr(inference, "evaluate", spy)
    metrics = eval_json(tmp_path, flip_sliding_checkpoint)
    assert metrics["flip"] is True and metrics["scales"] == [1.0] and metrics["crf"] is False
    assert metrics["sliding"] == {"crop": [24, 32], "stride": [16, 16]}
    model, cfg, _ = load_model(flip_sliding_checkpoint)
    # what validation during training passes (engine.train._validate)
    protocol = {"scales": (1.0,), "flip": True, "sliding": cfg.eval.sliding, "crf": None}
    assert {key: calls[0][key] for key in protocol} == protocol
    assert calls[0]["batch_size"] == cfg.eval.batch_size == 8  # synthetic/demo's
    validation = real_evaluate(model, synthetic_dataset(split="val"), **calls[0])
    assert metrics["confusion"] == validation["confusion"].tolist()


def test_eval_overrides_replace_the_checkpoints_protocol(
    tmp_path, flip_sliding_checkpoint, checkpoint, capsys
):
    plain = eval_json(tmp_path, flip_sliding_checkpoint, "eval.flip=false", "eval.sliding=null")
    assert plain["flip"] is False and plain["sliding"] is None
    assert plain["overrides"] == ["eval.flip=false", "eval.sliding=null"]
    # the same weights, validated without them during training: the same numbers
    assert plain["confusion"] == eval_json(tmp_path, checkpoint, name="b.json")["confusion"]
    scaled = eval_json(tmp_path, flip_sliding_checkpoint, "eval.scales=[0.75,1.0]", name="s.json")
    assert scaled["scales"] == [0.75, 1.0] and scaled["flip"] is True


def test_overrides_stand_anywhere_on_the_command_line(tmp_path, checkpoint, capsys):
    out = tmp_path / "metrics.json"
    argv = ["eval", "eval.flip=true", "--checkpoint", str(checkpoint), "--quiet", "eval.batch_size=3"]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["flip"] is True


def test_predict_takes_protocol_overrides(tmp_path, checkpoint, capsys):
    dataset = synthetic_dataset(split="val")
    images = tmp_path / "images"
    images.mkdir()
    for index, name in enumerate(dataset.names[:1]):
        Image.fromarray(dataset.read_raw(index)["image"]).save(images / f"{name}.png")
    plain, flipped = tmp_path / "plain", tmp_path / "flipped"
    base = ["predict", "--checkpoint", str(checkpoint), "--probs", "--quiet"]
    assert main([*base, str(images), "--out", str(plain)]) == 0
    assert main([*base, str(images), "eval.flip=true", "--out", str(flipped)]) == 0
    name = next(plain.glob("*.npy")).name
    assert not np.allclose(np.load(plain / name), np.load(flipped / name))


def test_pseudo_labels_take_protocol_and_data_overrides(tmp_path, checkpoint, capsys):
    out = tmp_path / "stage2"
    argv = ["pseudo-labels", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet"]
    assert main([*argv, "eval.flip=true", "data.weak_label_args={points_per_class: 1}"]) == 0
    summary = json.loads((out / "pseudo_labels.json").read_text())
    assert summary["flip"] is True and summary["split"] == "train"
    assert summary["quality"]["weak_miou"] == pytest.approx(1.0)


@pytest.mark.parametrize("verb", ["eval", "predict", "pseudo-labels"])
def test_an_unknown_key_is_a_config_error_naming_it(tmp_path, checkpoint, capsys, verb):
    inputs = [str(tmp_path)] if verb == "predict" else []
    argv = [verb, "--checkpoint", str(checkpoint), *inputs, "--out", str(tmp_path / "o")]
    assert main([*argv, "eval.flipp=true"]) == 1
    error = capsys.readouterr().err
    assert "ConfigError" in error and "eval.flipp" in error and "flip" in error
    assert not (tmp_path / "o").exists()


def test_a_bad_value_is_a_config_error_naming_the_key(tmp_path, checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "eval.flip=sometimes"]) == 1
    assert "ConfigError: eval.flip: expected bool" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint), "eval.sliding={size: 32}"]) == 1
    assert "eval.sliding: expected {crop: [H, W]" in capsys.readouterr().err


def test_the_model_is_the_checkpoints(tmp_path, checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "model.output_stride=8"]) == 1
    assert "model.output_stride: fixed by the checkpoint" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint), "eval.max_images=1"]) == 1
    assert "--max-images N" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("verb", "flag", "replacement"),
    [
        ("eval", ["--flip"], "eval.flip=true"),
        ("eval", ["--scales", "0.5", "1"], "eval.scales="),
        ("eval", ["--sliding", "512", "1024"], "eval.sliding={crop: [H, W]}"),
        ("eval", ["--crf"], "eval.crf=true"),
        ("eval", ["--root", "data"], "data.root=DIR"),
        ("predict", ["--resize", "0"], "data.eval_resize=N"),
        ("predict", ["--batch-size", "4"], "eval.batch_size=N"),
        ("pseudo-labels", ["--weak-label-dir", "w"], "data.weak_label_dir=DIR"),
        ("pseudo-labels", ["--supervision", "boxes"], "data.supervision=KIND"),
    ],
)
def test_an_old_flag_stops_naming_its_override(tmp_path, capsys, verb, flag, replacement):
    inputs = [str(tmp_path)] if verb == "predict" else []
    argv = [verb, "--checkpoint", "last.pt", *inputs, "--out", str(tmp_path / "o"), *flag]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"agmm {verb}: error: {flag[0]} is gone") and replacement in error


def test_another_dataset_does_not_inherit_the_checkpoints_dataset_keys(resizing_checkpoint):
    from agmm.eval.commands import inference_config
    from agmm.models.build import load_model

    _, cfg, _ = load_model(resizing_checkpoint)
    assert cfg.data.eval_resize == 16 and cfg.data.dataset_args
    same = inference_config(cfg, ["data.root=elsewhere"])
    assert same.data.eval_resize == 16 and same.data.dataset_args == cfg.data.dataset_args
    other = inference_config(cfg, ["data.name=camvid", "data.root=camvid"])
    assert other.data.eval_resize is None and other.data.dataset_args == {}
    assert other.data.root == "camvid" and other.data.val_split == cfg.data.val_split
    boxes = inference_config(cfg, ["data.supervision=boxes"])
    assert boxes.data.weak_label_args == {} and boxes.data.dataset_args == cfg.data.dataset_args
