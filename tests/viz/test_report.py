"""The HTML report gathers metrics, curves and pictures of a run folder."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
from PIL import Image

from agmm.viz import save_panels, write_report


def test_report_embeds_curves_panels_metrics_and_config(tmp_path, shapes, check_picture, write_log):
    run = tmp_path / "run"
    run.mkdir()
    write_log(run / "metrics.jsonl")
    (run / "result.json").write_text(
        json.dumps({"miou": 0.5123, "per_class_iou": {"background": 0.9, "square": None}})
    )
    (run / "config.yaml").write_text("model:\n  name: deeplabv3plus\n")
    sample = shapes[0]
    save_panels(
        run / "pictures" / "panels.png",
        [{"image": sample["image"], "mask": sample["mask"], "weak_label": sample["weak_label"]}],
        palette=shapes.palette,
    )
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    assert "0.5123" in page and "background" in page and "deeplabv3plus" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # curves + panels
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.std() > 10
    check_picture(run / "curves.png", min_size=(800, 300))


def test_report_of_an_empty_folder_says_so(tmp_path):
    page = write_report(tmp_path, out=tmp_path / "r.html").read_text()
    assert "No metrics" in page
