"""Export the inference model (the segmenter's logits only) to ONNX or TorchScript.

Each export is checked against PyTorch on a random input (onnxruntime for ONNX); a difference
above ``atol`` raises. ONNX graphs get dynamic batch/height/width axes when the model traces with
them and the check passes at a second size; otherwise the export is redone at the fixed
``image_size`` and says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from agmm.errors import AGMMError


class ExportError(AGMMError):
    """An export failed or does not reproduce PyTorch's output."""


class LogitsOnly(nn.Module):
    """Wraps a segmenter so that ``forward(images (B, 3, H, W)) -> logits (B, K, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        return out["logits"] if isinstance(out, dict) else out


def _example(image_size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *image_size, generator=generator)


def _max_abs_diff(expected: torch.Tensor, actual) -> float:
    return float((expected - torch.as_tensor(actual)).abs().max())


def check_onnx(
    wrapped: nn.Module, path: str | Path, images: torch.Tensor, atol: float = 1e-4
) -> float:
    """Runs the ONNX file with onnxruntime on images (B, 3, H, W); returns the max |Δ| vs PyTorch.

    Raises ExportError when it exceeds ``atol``.
    """
    import onnxruntime

    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # a failed check is reported by the exception, not logs
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        (output,) = session.run(None, {"images": images.numpy()})
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(
            f"{path}: onnxruntime cannot run the exported graph: {_first_line(error)}"
        ) from error
    with torch.no_grad():
        expected = wrapped(images)
    if tuple(output.shape) != tuple(expected.shape):
        raise ExportError(
            f"{path}: ONNX output shape {tuple(output.shape)} != PyTorch {tuple(expected.shape)}"
        )
    diff = _max_abs_diff(expected, output)
    if not diff <= atol:
        raise ExportError(f"{path}: ONNX output differs from PyTorch by {diff:.3g} > {atol}")
    return diff


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    image_size: tuple[int, int] = (512, 512),
    dynamic: bool = True,
    opset: int = 17,
    atol: float = 1e-4,
) -> dict:
    """Exports ``model``'s logits to ONNX (input ``images`` (B, 3, H, W), output ``logits``).

    Returns ``dict(path, dynamic, max_abs_diff)``. ``image_size`` (H, W) is the tracing size and,
    when the dynamic export fails, the fixed input size of the graph.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = LogitsOnly(model).eval().cpu()
    example = _example(image_size)

    def export(dynamic_axes: dict | None) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter deprecation chatter
            torch.onnx.export(
                wrapped,
                (example,),
                str(path),
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=False,  # the torch.export-based exporter needs onnxscript
            )

    if dynamic:
        axes = {0: "batch", 2: "height", 3: "width"}
        try:
            export({"images": axes, "logits": axes})
            _set_class_dim(path, wrapped, example)
            check_onnx(wrapped, path, _example(_other_size(image_size), batch=2, seed=1), atol)
            diff = check_onnx(wrapped, path, example, atol)
            return {"path": str(path), "dynamic": True, "max_abs_diff": diff}
        except Exception as error:  # noqa: BLE001 - any failure means: fall back to a fixed size
            warnings.warn(
                f"dynamic-size ONNX export failed ({type(error).__name__}: {_first_line(error)}); "
                f"exporting with a fixed input size {tuple(image_size)}",
                stacklevel=2,
            )
    try:
        export(None)
    except Exception as error:  # noqa: BLE001
        hint = ""
        if "upsample_bicubic2d_aa" in str(error):
            hint = (
                " (a ViT resamples its position embeddings with an operator ONNX lacks when the"
                " input is not its native size: export at that size, e.g. --size 224 224 for"
                " *_patch16_224 backbones, and predict with a sliding window; or use --torchscript)"
            )
        raise ExportError(f"{path}: ONNX export failed: {_first_line(error)}{hint}") from error
    diff = check_onnx(wrapped, path, example, atol)
    return {"path": str(path), "dynamic": False, "max_abs_diff": diff}


def _set_class_dim(path: Path, wrapped: nn.Module, example: torch.Tensor) -> None:
    """Writes K into the graph's ``logits`` shape: the legacy exporter leaves every dimension of
    an output with dynamic axes symbolic, although only batch, height and width vary."""
    import onnx

    with torch.no_grad():
        num_classes = int(wrapped(example).shape[1])
    graph = onnx.load(str(path))
    for output in graph.graph.output:
        if output.name == "logits":
            output.type.tensor_type.shape.dim[1].dim_value = num_classes
    onnx.save(graph, str(path))


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    image_size: tuple[int, int] = (512, 512),
    atol: float = 1e-4,
) -> dict:
    """Traces ``model``'s logits to TorchScript; checks it at the tracing size and another size.

    Returns ``dict(path, dynamic, max_abs_diff)``; ``dynamic`` is False (with a warning) when the
    traced graph does not reproduce PyTorch at another input size. Load with ``torch.jit.load``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = LogitsOnly(model).eval().cpu()
    example = _example(image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(wrapped, (example,), check_trace=False)
        except Exception as error:  # noqa: BLE001
            raise ExportError(
                f"{path}: TorchScript tracing failed: {_first_line(error)}"
            ) from error
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
        diff = _max_abs_diff(wrapped(example), loaded(example))
        other = _example(_other_size(image_size), batch=2, seed=1)
        try:
            dynamic = _max_abs_diff(wrapped(other), loaded(other)) <= atol
        except RuntimeError:
            dynamic = False
    if not diff <= atol:
        raise ExportError(f"{path}: TorchScript output differs from PyTorch by {diff:.3g} > {atol}")
    if not dynamic:
        warnings.warn(
            f"{path}: the traced model only reproduces PyTorch at input size {tuple(image_size)}",
            stacklevel=2,
        )
    return {"path": str(path), "dynamic": dynamic, "max_abs_diff": diff}


def _first_line(error: Exception) -> str:
    """The first line of an exception message (the ONNX exporter appends whole graphs)."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def _other_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """A second test size, different in both directions, to check dynamic shapes."""
    return image_size[0] + image_size[0] // 4, image_size[1] - image_size[1] // 8
