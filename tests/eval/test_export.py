"""ONNX and TorchScript exports reproduce PyTorch's logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agmm.eval.export import ExportError, export_onnx, export_torchscript

pytest.importorskip("onnxruntime")


class TinySegmenter(nn.Module):
    """Stride-2 encoder, BN, bilinear upsampling to the input size, dict output with features."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, images):
        features = self.encoder(images)
        logits = nn.functional.interpolate(
            self.head(features), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        return {"logits": logits, "features": features}


def test_onnx_export_matches_pytorch_at_any_size(tmp_path):
    import onnxruntime

    model = TinySegmenter().eval()
    result = export_onnx(model, tmp_path / "model.onnx", image_size=(32, 48))
    assert result["dynamic"] and result["max_abs_diff"] < 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    images = torch.randn(3, 3, 20, 28)
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images)["logits"]
    assert logits.shape == (3, 3, 20, 28)
    assert abs(torch.from_numpy(logits) - expected).max() < 1e-4
    (output,) = session.get_outputs()
    assert output.shape[1] == 3  # K is fixed; batch, height and width are symbolic
    assert all(isinstance(dim, str) for dim in (output.shape[0], *output.shape[2:]))


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_torchscript_export_matches_pytorch(tmp_path):
    model = TinySegmenter().eval()
    result = export_torchscript(model, tmp_path / "model.pt", image_size=(24, 32))
    assert result["max_abs_diff"] < 1e-4 and result["dynamic"]
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    images = torch.randn(1, 3, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images)["logits"], atol=1e-4, rtol=0)


class Unexportable(nn.Module):
    def forward(self, images):
        return {"logits": torch.from_numpy(images.numpy() * 2)}


def test_a_failing_export_is_an_export_error(tmp_path):
    with pytest.warns(UserWarning, match="fixed input size"), pytest.raises(ExportError):
        export_onnx(Unexportable(), tmp_path / "bad.onnx", image_size=(8, 8))
