"""Evaluation, prediction, pseudo labels and export of the segmenter (the GMM is training-only).

``evaluate`` (mIoU over a dataset), ``predict_logits`` (multi-scale + flip + sliding window),
``ConfusionMatrix`` (exact, DDP-aware), ``crf_refine`` (dense CRF), ``predict_images``,
``write_pseudo_labels`` / ``pseudo_label_quality`` and ``export_onnx`` / ``export_torchscript``.
"""

from agmm.eval.crf import crf_refine
from agmm.eval.export import export_onnx, export_torchscript
from agmm.eval.inference import evaluate, predict_logits
from agmm.eval.metrics import ConfusionMatrix
from agmm.eval.predict import evaluate_saved_predictions, predict_images
from agmm.eval.pseudo_labels import PseudoLabelQuality, pseudo_label_quality, write_pseudo_labels

__all__ = [
    "ConfusionMatrix",
    "PseudoLabelQuality",
    "crf_refine",
    "evaluate",
    "evaluate_saved_predictions",
    "export_onnx",
    "export_torchscript",
    "predict_images",
    "predict_logits",
    "pseudo_label_quality",
    "write_pseudo_labels",
]
