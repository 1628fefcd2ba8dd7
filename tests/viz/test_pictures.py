"""Panels, G pictures, t-SNE and curves are produced and show data, not blank canvases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agmm.viz import (
    colorize,
    gmm_heatmaps,
    gmm_rgb,
    panel_rows,
    plot_curves,
    plot_tsne,
    read_log,
    save_panels,
)


def test_colorize_uses_the_palette_and_white_for_ignore():
    palette = np.array([[10, 20, 30], [200, 0, 0]], dtype=np.uint8)
    rgb = colorize(np.array([[0, 1, 255]]), palette)
    assert rgb.tolist() == [[[10, 20, 30], [200, 0, 0], [255, 255, 255]]]


def test_gmm_picture_is_the_argmax_colour_scaled_by_confidence():
    palette = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], dtype=np.uint8)
    gmm = torch.zeros(3, 1, 2)
    gmm[1] = torch.tensor([[1.0, 0.2]])
    gmm[2] = torch.tensor([[0.1, 0.5]])
    rgb = gmm_rgb(gmm, palette)
    assert rgb[0, 0].tolist() == [200, 0, 0]  # class 1, confidence 1
    assert rgb[0, 1].tolist() == [0, 100, 0]  # class 2, confidence 0.5
    assert gmm_rgb(torch.zeros(3, 4, 4), palette).max() == 0  # nothing present: black
    gmm[0, 0, 0] = 2.0  # class 0 (black in the palette) is drawn grey
    assert gmm_rgb(gmm, palette)[0, 0].tolist() == [170, 170, 170]
    assert gmm_rgb(gmm, palette, size=(4, 8)).shape == (4, 8, 3)


def test_panels_show_every_column_with_the_real_gmm(tmp_path, shapes, segmenter, check_picture):
    from agmm.gmm.loss import AGMMLoss

    loss_module = AGMMLoss(in_channels=8, num_classes=shapes.num_classes, embed_dim=8)
    rows = panel_rows(segmenter, shapes, [0, 1], loss_module=loss_module)
    assert {"gmm_old", "gmm_new", "present", "weak_label", "mask"} <= set(rows[0])
    path = save_panels(
        tmp_path / "panels.png", rows, palette=shapes.palette, classes=shapes.classes
    )
    pixels = check_picture(path, min_size=(6 * 200, 2 * 200))
    # every column shows something: split the picture into six vertical strips
    strips = np.array_split(pixels[: int(pixels.shape[0] * 0.9)], 6, axis=1)
    assert all(strip.std() > 5 for strip in strips)


def test_panels_work_without_gmm_and_from_numpy(tmp_path, shapes, check_picture):
    sample = shapes[0]
    image = (np.random.default_rng(0).random((32, 40, 3)) * 255).astype(np.uint8)
    rows = [
        {"image": image, "prediction": torch.randn(4, 32, 40), "name": "a"},
        {"image": sample["image"], "mask": sample["mask"], "name": "b"},
    ]
    path = save_panels(tmp_path / "p.png", rows, palette=shapes.palette)
    check_picture(path, min_size=(300, 300))


def test_gmm_heatmaps(tmp_path, check_picture):
    gmm = torch.rand(3, 12, 16)
    gmm[1] = 0
    path = gmm_heatmaps(gmm, ["a", "b", "c"], tmp_path / "heat.png")
    check_picture(path, min_size=(300, 150))


def test_tsne_plot_of_pixel_features(tmp_path, shapes, segmenter, check_picture):
    batch = torch.stack([shapes[i]["image"] for i in range(2)])
    masks = torch.stack([shapes[i]["mask"] for i in range(2)])
    features = segmenter(batch)["features"]
    path = plot_tsne(
        features,
        masks,
        tmp_path / "tsne.png",
        palette=shapes.palette,
        classes=shapes.classes,
        max_points=300,
        num_threads=1,
    )
    check_picture(path, min_size=(500, 500), min_colours=5)


def test_tsne_subsample_is_bounded_and_seeded():
    from agmm.viz.tsne import sample_pixel_features

    features = torch.randn(2, 5, 30, 40)
    labels = torch.randint(0, 3, (2, 60, 80))
    feats, ids = sample_pixel_features(features, labels, max_points=2000)
    assert feats.shape == (2000, 5) and ids.shape == (2000,)
    again, _ = sample_pixel_features(features, labels, max_points=2000)
    assert (feats == again).all()


def test_curves_from_a_jsonl_log(tmp_path, check_picture, write_log):
    log = tmp_path / "metrics.jsonl"
    write_log(log)
    records = read_log(log)
    assert len(records) == 30
    path = plot_curves(log, tmp_path / "curves.png")
    check_picture(path, min_size=(1200, 300))


def test_curves_from_records_with_nested_terms(tmp_path, check_picture):
    records = [
        {"step": s, "loss": 1 / (s + 1), "terms": {"seg": 0.5 / (s + 1)}, "miou": s / 20}
        for s in range(20)
    ]
    check_picture(plot_curves(records, tmp_path / "c.png"), min_size=(800, 300))
    with pytest.raises(Exception, match="nothing|no loss"):
        plot_curves([{"step": 1, "time": 3.0}], tmp_path / "empty.png")


def test_panel_legend_names_void_when_a_label_shows_it(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    labels = []
    original = Figure.legend

    def recording_legend(self, *args, handles=(), **kwargs):
        labels.extend(handle.get_label() for handle in handles)
        return original(self, *args, handles=handles, **kwargs)

    monkeypatch.setattr(Figure, "legend", recording_legend)
    mask = np.zeros((8, 8), np.uint8)
    mask[:2] = 255
    mask[4:] = 1
    palette = np.array([[0, 0, 0], [200, 0, 0]], np.uint8)
    save_panels(tmp_path / "p.png", [{"mask": mask}], palette=palette, classes=["road", "car"])
    assert labels == ["road", "car", "void / unlabeled (255)"]


def test_pictures_spread_their_images_over_the_dataset():
    from agmm.viz.panels import spread_indices

    assert spread_indices(4, 101) == [0, 33, 67, 100]  # not four consecutive video frames
    assert spread_indices(4, 3) == [0, 1, 2] and spread_indices(1, 10) == [0]
