"""The concerns around the training step, one hook each (see :class:`agmm.engine.trainer.HookBase`).

In the order ``train()`` registers them: :class:`EMAHook` (weight average), :class:`LoggingHook`
(loss window -> log line), :class:`PseudoLabelHook` (pseudo-label mIoU on the training batches),
:class:`ValidationHook`, :class:`CheckpointHook` and :class:`RankAgreementHook`. Hooks that write
state into the checkpoint run before the checkpoint hook, so that a saved step is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from timm.utils import ModelEmaV3
from torch import nn

from agmm.engine.run_log import LossWindow
from agmm.engine.trainer import HookBase, StepResult, Trainer
from agmm.errors import CheckpointError
from agmm.eval.pseudo_labels import PseudoLabelQuality
from agmm.runtime import distributed as dist_utils
from agmm.runtime.checkpoint import load_state_dict_checked, write_run_checkpoint
from agmm.runtime.constants import IGNORE_INDEX


class EMAHook(HookBase):
    """timm's weight EMA of the segmenter, updated after every applied step.

    Checkpoint: the average as ``model`` (what validation, eval and export use) and the trained
    weights as ``model_train`` (what a resumed run continues from).
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        self.model, self.decay = model, decay
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True)
        self.module = self.ema.module  # the averaged segmenter

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.finite:  # timm counts updates from 1 (decay 0 at the first)
            self.ema.update(self.model, step=trainer.step)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "model_train": self.model.state_dict()}

    def load_state_dict(self, state: dict, path: Path) -> None:
        if "model_train" not in state:
            raise CheckpointError(
                f"{path}: train.ema_decay={self.decay} but the checkpoint has "
                "no averaged weights (it was trained without an EMA)"
            )
        load_state_dict_checked(self.module, state["model"], path, "EMA model")


class LoggingHook(HookBase):
    """The mean loss terms every ``every`` steps and at the last; the progress bar in between."""

    def __init__(self, device: torch.device, *, every: int) -> None:
        self.every = every
        self.window = LossWindow(device)

    def before_train(self, trainer: Trainer) -> None:
        self.window.reset()  # images/s from the first step on, not from the build

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.finite:
            losses = result.losses
            self.window.add(losses["loss"], losses["terms"], images=result.batch["image"].shape[0])
        step = trainer.step
        if step % self.every == 0 or step == trainer.max_steps:
            window = self.window.compute_and_reset()
            trainer.log.train(step, window, lr=result.lr, skipped=trainer.skipped)
        else:
            trainer.log.advance(step)


class PseudoLabelHook(HookBase):
    """Tracks the pseudo labels on the training batches; reported at each validation."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.tracker = PseudoLabelTracker(num_classes, device)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.finite:
            self.tracker.update(result.outputs, result.losses, result.batch)

    def metrics(self) -> dict:
        return self.tracker.compute_and_reset()


class ValidationHook(HookBase):
    """Every ``every`` steps (0: only at the last): one log line with every hook's ``metrics()``
    and, with ``evaluate``, the scores of ``evaluate(model)`` on the validation split.

    ``model`` is what is validated: the trained segmenter or the EMA's average. ``latest`` holds
    the last line's values.
    """

    def __init__(
        self, *, every: int, model: nn.Module, evaluate: Callable[[nn.Module], dict] | None
    ) -> None:
        self.every, self.model, self.evaluate = every, model, evaluate
        self.latest: dict = {}

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        step = trainer.step
        if (self.every and step % self.every == 0) or step == trainer.max_steps:
            self.latest = self.validate(trainer)

    def validate(self, trainer: Trainer) -> dict:
        dist_utils.broadcast_buffers(trainer.step_module)  # rank 0's BatchNorm statistics
        metrics = {}
        for hook in trainer.hooks:
            if hook is not self:
                metrics.update(hook.metrics())
        if self.evaluate is not None:
            if self.model is not trainer.model:  # the EMA's copy lives outside the DDP module
                dist_utils.broadcast_buffers(self.model)
            metrics.update(self.evaluate(self.model))
        trainer.log.scalars(trainer.step, metrics)
        return metrics


class CheckpointHook(HookBase):
    """Writes ``trainer.state_dict()`` to ``output_dir/last.pt`` every ``every`` steps, at the last
    and when stopping early (``step_<N>.pt`` copies too with ``keep > 0``); main process only."""

    def __init__(self, output_dir: Path, *, every: int, keep: int, enabled: bool) -> None:
        self.output_dir, self.every, self.keep, self.enabled = output_dir, every, keep, enabled
        self.path: Path | None = None  # the newest checkpoint written

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        step = trainer.step
        if step % self.every == 0 or step == trainer.max_steps or trainer.stopping:
            self.path = self.save(trainer)

    def save(self, trainer: Trainer) -> Path | None:
        if not self.enabled:
            return None
        return write_run_checkpoint(trainer.state_dict(), self.output_dir, keep=self.keep)


class RankAgreementHook(HookBase):
    """At the end: the largest difference of a weight checksum across processes, logged if not 0.

    DDP keeps the copies identical; a difference means a bug (e.g. an unsynchronised buffer).
    """

    def __init__(self) -> None:
        self.difference = 0.0

    def after_train(self, trainer: Trainer) -> None:
        dist_utils.broadcast_buffers(trainer.step_module)
        checksums = _weight_checksums(trainer.step_module)
        self.difference = dist_utils.max_difference_across_ranks(checksums)
        if self.difference > 0:
            trainer.log.message(
                f"warning: model weights differ across processes by up to {self.difference:.3g}"
            )


def _weight_checksums(module: nn.Module) -> torch.Tensor:
    """One float64 sum per parameter and floating buffer: equal on all ranks iff (almost surely)
    the weights are."""
    tensors = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]
    return torch.stack([t.detach().double().sum() for t in tensors])


class PseudoLabelTracker:
    """mIoU of the GMM pseudo labels (arg-max of G over the image's classes) and of the segmenter
    on the training batches, against the dense masks where the dataset has them (paper Fig. 10).

    With online CAM seeds (image tags) also their precision (mIoU on the seeded pixels) and
    coverage (seeded share of the labeled pixels), the figures ``agmm seeds`` prints. The counts
    are eval's :class:`PseudoLabelQuality`, kept on the training device; the CAM seeds are its
    weak labels.
    """

    # PseudoLabelQuality source -> logged name
    NAMES = {
        "gmm_new": "pseudo/gmm_miou",
        "self_target": "pseudo/target_miou",
        "seg": "pseudo/seg_miou",
        "weak": "seeds/precision_miou",
    }

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.quality = PseudoLabelQuality(
            num_classes, IGNORE_INDEX, sources=tuple(self.NAMES), device=device
        )

    @torch.no_grad()
    def update(self, outputs: dict, losses: dict, batch: dict) -> None:
        masks = batch["mask"]
        if not bool((masks != IGNORE_INDEX).any()):
            return
        gmm = {}
        if "gmm_new" in losses:  # arg-max over each image's own classes
            gmm = {"gmm_new": losses["gmm_new"], "present": losses["present"]}
            target = losses.get("self_target")
            if target is not None and target.shape == losses["gmm_new"].shape:
                gmm["self_target"] = target  # L_self's target (G itself, or G x P)
        self.quality.update(
            masks, weak_labels=outputs.get("cam_seeds"), logits=outputs["logits"], **gmm
        )

    def compute_and_reset(self) -> dict:
        self.quality.all_reduce()
        out = {}
        for source, name in self.NAMES.items():
            matrix = self.quality.confusion[source]
            if int(matrix.matrix.sum()) > 0:
                out[name] = float(matrix.miou())
        seeded, labeled = self.quality.counts.tolist()
        if labeled > 0:
            out["seeds/coverage"] = seeded / labeled
        self.quality.reset()
        return out
