"""predict -> palette PNG -> read back -> eval gives the in-memory mIoU; bad files are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from stand_ins import PALETTE, TinyDataset, make_sample

from agmm.data.transforms import normalize_image
from agmm.errors import DataError, LabelError
from agmm.eval.inference import evaluate
from agmm.eval.predict import (
    evaluate_saved_predictions,
    list_images,
    predict_images,
    read_label_png,
    save_label_png,
)


class FileBackedDataset(TinyDataset):
    """Images written as PNG files; the in-memory images are those files read back."""

    def __init__(self, root, model, sizes):
        rng = np.random.default_rng(0)
        self.samples = []
        for index, size in enumerate(sizes):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            name = f"img{index:02d}"
            Image.fromarray(pixels).save(root / f"{name}.png")
            image = normalize_image(pixels)
            with torch.no_grad():
                mask = model(image[None])["logits"][0].argmax(0)
            mask = torch.where(torch.from_numpy(rng.random(size) < 0.3), (mask + 1) % 4, mask)
            self.samples.append(make_sample(image, mask, name, self.num_classes))


def test_label_png_is_palette_mode_and_reads_back_exactly(tmp_path):
    label = np.array([[0, 1, 2], [3, 255, 0]], dtype=np.uint8)
    path = save_label_png(label, tmp_path / "sub" / "a.png", PALETTE)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == PALETTE[1].tolist()
    assert (read_label_png(path) == label).all()


def test_predict_then_eval_round_trips(tmp_path, model):
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    dataset = FileBackedDataset(images_dir, model, sizes=[(10, 14)] * 3 + [(12, 9)] * 2)
    in_memory = evaluate(model, dataset, scales=(1.0, 0.75), flip=True, progress=False)
    written = predict_images(
        model,
        [images_dir],
        tmp_path / "pred",
        palette=PALETTE,
        scales=(1.0, 0.75),
        flip=True,
        save_probs=True,
        batch_size=2,
        progress=False,
    )
    assert sorted(p.name for p in written) == [f"img{i:02d}.png" for i in range(5)]
    from_disk = evaluate_saved_predictions(tmp_path / "pred", dataset, progress=False)
    assert from_disk["miou"] == pytest.approx(in_memory["miou"])
    assert (from_disk["confusion"] == in_memory["confusion"]).all()
    probs = np.load(tmp_path / "pred" / "img03.npy")
    assert probs.shape == (4, 12, 9) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=1e-2)
    assert (probs.argmax(0) == read_label_png(tmp_path / "pred" / "img03.png")).mean() > 0.95


def test_unreadable_image_is_named(tmp_path, model):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "fine.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg"):
        predict_images(model, [tmp_path], tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="missing.png"):
        list_images([tmp_path / "missing.png"])


def test_saved_prediction_of_the_wrong_size_is_named(tmp_path, model):
    dataset = TinyDataset(model, num_images=1)
    save_label_png(np.zeros((3, 3), np.uint8), tmp_path / "img00.png")
    with pytest.raises(LabelError, match="img00.png"):
        evaluate_saved_predictions(tmp_path, dataset, progress=False)
