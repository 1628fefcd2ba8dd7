"""The training loop as a small core plus hooks.

:class:`Trainer` owns what every step needs (the DDP-wrapped :class:`TrainStep`, the optimiser,
scheduler and gradient scaler, the step count and the data position) and runs :meth:`Trainer.run_step`
until the last step. Every other concern (logging, weight EMA, pseudo-label tracking, validation,
checkpoints: :mod:`agmm.engine.hooks`) is a :class:`HookBase` the loop calls after each step.

A checkpoint is the trainer's own state plus each hook's ``state_dict()``, and a resume hands the
same dict to the same hooks' ``load_state_dict()``: one list drives both, so a new concern with
state is a new hook, not an edit of the loop or of the checkpoint code.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from agmm.config import TrainConfig
from agmm.engine.run_log import RunLogger
from agmm.engine.sampler import ResumableSampler
from agmm.errors import AGMMError, CheckpointError
from agmm.runtime import distributed as dist_utils
from agmm.runtime.checkpoint import FORMAT, capture_rng, load_state_dict_checked, restore_rng
from agmm.runtime.constants import IGNORE_INDEX


class NonFiniteLossError(AGMMError):
    """Too many training steps produced a NaN or infinite loss."""


class TrainStep(nn.Module):
    """Segmenter + AGMMLoss as one module, so that DDP all-reduces the gradients of both.

    For image-tag supervision ``cam_seeds`` turns the detached CAMs into weak labels each step.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, cam_seeds=None) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.cam_seeds = cam_seeds

    def forward(
        self,
        images: torch.Tensor,
        weak_labels: torch.Tensor,
        *,
        tags: torch.Tensor | None = None,
        valid_mask: torch.Tensor | None = None,
        use_cam_seeds: bool = False,
        use_gmm: bool = True,
    ) -> tuple[dict, dict]:
        """Returns (model outputs, AGMMLoss outputs)."""
        outputs = self.model(images)
        if self.cam_seeds is not None:
            if use_cam_seeds:
                weak_labels = self.cam_seeds(outputs["cams"].detach(), tags, images)
            else:  # warm-up: classification only, no labeled pixel for L_seg and the GMM
                weak_labels = torch.full_like(weak_labels, IGNORE_INDEX)
            if valid_mask is not None:
                weak_labels = weak_labels.masked_fill(~valid_mask, IGNORE_INDEX)
            if use_cam_seeds:
                outputs["cam_seeds"] = weak_labels  # for the seed precision / coverage log
        losses = self.loss_fn(
            outputs["features"],
            outputs["logits"],
            weak_labels,
            image_classes=tags,  # the classes of the whole image, before cropping
            tags=tags if "cls_logits" in outputs else None,
            cls_logits=outputs.get("cls_logits"),
            valid_mask=valid_mask,
            use_gmm=None if use_gmm else False,
            coarse_logits=outputs.get("coarse_logits"),
        )
        return outputs, losses


@dataclass
class StepResult:
    """What one step produced, handed to every hook's ``after_step``."""

    batch: dict  # on the device
    outputs: dict  # the segmenter's outputs
    losses: dict  # AGMMLoss's outputs ("loss", "terms", "gmm_new", ...)
    finite: bool  # False: a non-finite loss, the step was skipped (no update)
    lr: float  # the learning rate of this step (before the scheduler moved on)


def uses_channels_last(setting: bool | str, device: torch.device) -> bool:
    """``train.channels_last`` resolved for a device: ``"auto"`` = on CPUs only."""
    return device.type == "cpu" if setting == "auto" else bool(setting)


class HookBase:
    """A concern the loop calls at fixed points, which owns the checkpoint keys of its own state.

    Subclasses override what they need. ``after_step`` sees ``trainer.step`` already counting the
    step just taken. ``state_dict()`` returns top-level checkpoint keys, merged after the trainer's
    own in hook order (a key given again replaces the earlier value: the EMA hook stores its
    average as ``model``); ``load_state_dict(state, path)`` gets the whole checkpoint on resume,
    before the first step. ``metrics()`` adds scalars to the next validation log line.
    """

    def before_train(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        pass

    def after_train(self, trainer: Trainer) -> None:
        pass

    def metrics(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, path: Path) -> None:
        pass


class Trainer:
    """The loop: ``run_step`` on the next batch, then each hook's ``after_step``, until the end.

    ``header``: checkpoint keys that describe the run rather than its progress (``config``,
    ``classes``, ``num_classes``, ``palette``). ``stop_at_step``: stop after this step (the
    checkpoint hook saves it), as a time-boxed job would. ``log`` is set once the start step is
    known (a resumed run's logger drops the lines after its checkpoint).
    """

    def __init__(
        self,
        *,
        step_module: TrainStep,
        ddp: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler | None,
        loader: DataLoader,
        sampler: ResumableSampler,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        settings: TrainConfig,
        cam_warmup: int,
        gmm_warmup: int,
        header: dict,
        hooks: Sequence[HookBase] = (),
        stop_at_step: int | None = None,
    ) -> None:
        self.step_module, self.ddp = step_module, ddp  # ddp: what a step calls (DDP-wrapped or not)
        self.model, self.loss_fn = step_module.model, step_module.loss_fn
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.loader, self.sampler = loader, sampler
        self.device, self.amp_dtype, self.settings = device, amp_dtype, settings
        self.channels_last = uses_channels_last(settings.channels_last, device)
        self.cam_warmup, self.gmm_warmup = cam_warmup, gmm_warmup
        self.header = header
        self.hooks = list(hooks)
        self.max_steps, self.stop_at_step = settings.steps, stop_at_step
        self.step = self.skipped = self.epoch = self.position = 0
        self.log: RunLogger | None = None

    @property
    def stopping(self) -> bool:
        """Whether ``stop_at_step`` is reached."""
        return self.stop_at_step is not None and self.step >= self.stop_at_step

    def train(self) -> None:
        """Steps until ``max_steps`` (or ``stop_at_step``), with the hooks around them."""
        self.step_module.train()
        for hook in self.hooks:
            hook.before_train(self)
        batches = _batches(self.loader, self.sampler, self.epoch, self.position)
        while self.step < self.max_steps:
            self.epoch, self.position, batch = next(batches)
            result = self.run_step(batch)
            for hook in self.hooks:
                hook.after_step(self, result)
            if self.stopping:
                break
        for hook in self.hooks:
            hook.after_train(self)

    def run_step(self, batch: dict) -> StepResult:
        """Forward, AGMMLoss, backward and optimiser step on one batch, then the scheduler.

        A non-finite loss skips the update on every process and is counted; more than
        ``train.max_skipped_steps`` of them raise :class:`NonFiniteLossError`.
        """
        batch = _to_device(batch, self.device)
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        amp_dtype = self.amp_dtype
        with torch.autocast(
            self.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            outputs, losses = self.ddp(
                batch["image"],
                batch["weak_label"],
                tags=batch["tags"],
                valid_mask=batch["valid_mask"],
                use_cam_seeds=self.step >= self.cam_warmup,
                use_gmm=self.step >= self.gmm_warmup,
            )
        loss = losses["loss"]
        # Every rank must agree to skip, or DDP's gradient all-reduce would wait forever.
        non_finite = dist_utils.all_reduce_sum(
            torch.tensor([float(not torch.isfinite(loss))], device=self.device)
        )
        self.optimizer.zero_grad(set_to_none=True)
        finite = non_finite.item() == 0
        if finite:
            self._update(loss)
        else:
            self._skip(loss, losses["terms"])
        lr = self.optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.step += 1
        return StepResult(batch=batch, outputs=outputs, losses=losses, finite=finite, lr=lr)

    def _update(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.ddp.parameters(), self.settings.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _skip(self, loss: torch.Tensor, terms: dict) -> None:
        self.skipped += 1
        self.log.message(
            f"step {self.step + 1}: loss is not finite ({loss.item()}), step skipped "
            f"({self.skipped} so far)"
        )
        limit = self.settings.max_skipped_steps
        if self.skipped > limit:
            raise NonFiniteLossError(
                f"{self.skipped} training steps had a non-finite loss (train.max_skipped_steps="
                f"{limit}); last terms: {_floats(terms)}. "
                "Try a lower train.lr, train.amp=off or train.grad_clip."
            )

    # ---- checkpoint state: the trainer's own keys, then each hook's --------------------------

    def state_dict(self) -> dict:
        """The checkpoint (format in :mod:`agmm.runtime.checkpoint`)."""
        state = {
            "format": FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "loss_module": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": capture_rng(),
            "sampler": {"epoch": self.epoch, "position": self.position},
            "skipped_steps": self.skipped,
            **self.header,
        }
        for hook in self.hooks:
            state.update(hook.state_dict())
        return state

    def load_state_dict(self, state: dict, path: Path) -> None:
        """Continue from checkpoint ``state`` (read from ``path``, named in errors)."""
        if int(state["num_classes"]) != self.header["num_classes"]:
            raise CheckpointError(
                f"{path}: checkpoint has {state['num_classes']} classes, dataset "
                f"{self.header['config']['data']['name']} has {self.header['num_classes']}"
            )
        # With an EMA hook "model" holds the averaged weights and "model_train" the trained ones.
        trained = state.get("model_train", state["model"])
        load_state_dict_checked(self.model, trained, path, "model")
        load_state_dict_checked(self.loss_fn, state["loss_module"], path, "GMM loss module")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.skipped = int(state["step"]), int(state.get("skipped_steps", 0))
        self.epoch = int(state["sampler"]["epoch"])
        self.position = int(state["sampler"]["position"])
        for hook in self.hooks:
            hook.load_state_dict(state, path)
        restore_rng(state["rng"])  # last: nothing after it may draw random numbers


def _batches(
    loader: DataLoader, sampler: ResumableSampler, epoch: int, position: int
) -> Iterator[tuple[int, int, dict]]:
    """Endless ``(epoch, position after this batch, batch)``, starting at batch ``position`` of ``epoch``."""
    while True:
        sampler.set_epoch(epoch, start=position * loader.batch_size)
        for batch in loader:
            position += 1
            yield epoch, position, batch
        epoch, position = epoch + 1, 0


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


def _floats(terms: dict) -> dict:
    return {name: round(float(value), 4) for name, value in terms.items()}
