"""``train(cfg)``: build the run's parts from the config, then hand them to the trainer.

The loop itself is :class:`agmm.engine.trainer.Trainer` (``run_step`` plus hooks); the concerns
around it are the hooks of :mod:`agmm.engine.hooks`. The same code runs one process on a CPU and N
processes under ``torchrun`` (DDP): distributed details live in :mod:`agmm.runtime.distributed` and
are no-ops in a single process.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from agmm.config import Config, dump_config, validate_paths
from agmm.data.collate import collate_batch
from agmm.data.transforms import denormalize_image
from agmm.engine.build import build_train_dataset, build_val_dataset
from agmm.engine.hooks import (
    CheckpointHook,
    EMAHook,
    LoggingHook,
    PseudoLabelHook,
    RankAgreementHook,
    ValidationHook,
)
from agmm.engine.optim import build_optimizer, build_scheduler
from agmm.engine.run_log import RunLogger
from agmm.engine.sampler import ResumableSampler, SeededDataset
from agmm.engine.trainer import HookBase, Trainer, TrainStep, uses_channels_last
from agmm.errors import ConfigError, DataError
from agmm.eval import evaluate
from agmm.gmm.build import build_loss
from agmm.models.build import build_segmenter
from agmm.runtime import distributed as dist_utils
from agmm.runtime.checkpoint import LAST, config_dict, load_checkpoint, resolve_resume
from agmm.seeds.box_cache import write_box_seed_folder
from agmm.seeds.cam import cam_seeds


def train(
    cfg: Config,
    *,
    resume: str | Path | None = None,
    stop_at_step: int | None = None,
    hooks: Sequence[HookBase] = (),
) -> dict:
    """Train the model of ``cfg``; returns the final metrics and the checkpoint path.

    ``resume``: a checkpoint file or run folder to continue from, or ``"auto"`` (the run's own
    ``last.pt`` if it exists). ``stop_at_step``: stop (after checkpointing) at this step, as a
    time-boxed job would; a later ``resume`` continues to the same result as one uninterrupted run.
    ``hooks``: extra :class:`~agmm.engine.trainer.HookBase` objects, called after the built-in
    ones that follow the step (EMA, logging, pseudo labels) and before validation and the
    checkpoint, whose state they join. Under ``torchrun`` every process calls this; rank 0 logs
    and writes files.

    On failure a run that started in a new (or empty) ``output_dir`` and saved no checkpoint
    leaves nothing behind; once ``last.pt`` exists it is kept and the error gets a note saying
    how to resume.
    """
    validate_paths(cfg)
    owns_group = not dist_utils.is_distributed()
    device = dist_utils.init_distributed(cfg.train.device)
    threads = torch.get_num_threads()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    output_dir = Path(cfg.output_dir)
    fresh = not output_dir.exists() or not any(output_dir.iterdir())
    try:
        return _train(cfg, device, resume, stop_at_step, hooks)
    except BaseException as error:
        for log in list(RunLogger.live):  # so that the error is not printed onto the progress bar
            log.close()
        if dist_utils.is_main():
            _leave_nothing_or_a_resumable_run(output_dir, fresh, error)
        raise
    finally:
        torch.set_num_threads(threads)
        if owns_group:
            dist_utils.cleanup()


def _leave_nothing_or_a_resumable_run(output_dir: Path, fresh: bool, error: BaseException) -> None:
    """After a failed run: remove what a fresh run wrote if it saved no checkpoint, else note on
    ``error`` that the run can be resumed from its ``last.pt``."""
    if (output_dir / LAST).is_file():
        error.add_note(
            f"{output_dir / LAST} is kept: continue with `agmm train --resume {output_dir}` "
            "(plus the same --config and overrides)"
        )
    elif fresh and output_dir.is_dir():
        shutil.rmtree(output_dir, ignore_errors=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train(
    cfg: Config, device: torch.device, resume, stop_at_step: int | None, extra_hooks
) -> dict:
    world, rank, main = dist_utils.world_size(), dist_utils.rank(), dist_utils.is_main()
    if cfg.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} images do not split evenly over {world} processes"
        )
    output_dir = Path(cfg.output_dir)
    resume_path = resolve_resume(resume, output_dir)
    if cfg.data.supervision == "boxes" and cfg.data.weak_label_dir is None:
        cfg = _with_box_seeds(cfg)
    seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
    train_set, val_set = _build_datasets(cfg)
    trainer = _build_trainer(cfg, device, train_set, stop_at_step)
    ema = EMAHook(trainer.model, decay=cfg.train.ema_decay) if cfg.train.ema_decay else None
    num_classes = trainer.header["num_classes"]
    pseudo = PseudoLabelHook(num_classes, device) if cfg.train.track_pseudo_labels else None
    score = None if val_set is None else partial(_validate, val_set=val_set, cfg=cfg, device=device)
    validation = ValidationHook(
        every=cfg.train.val_every,
        model=ema.module if ema is not None else trainer.model,  # validated and saved as "model"
        evaluate=score,
    )
    checkpoints = CheckpointHook(
        output_dir, every=cfg.train.checkpoint_every, keep=cfg.train.keep_checkpoints, enabled=main
    )
    agreement = RankAgreementHook()
    hooks = [ema, LoggingHook(device, every=cfg.train.log_every), pseudo, *extra_hooks]
    hooks += [validation, checkpoints, agreement]  # after the others: a saved step is complete
    trainer.hooks = [hook for hook in hooks if hook is not None]
    if resume_path is not None:
        trainer.load_state_dict(load_checkpoint(resume_path, map_location=device), resume_path)
    else:
        torch.manual_seed(cfg.seed + rank)  # different dropout per rank, reproducible per run
    trainer.log = RunLogger(cfg, output_dir, enabled=main, start_step=trainer.step)
    if main:
        _start_run_folder(cfg, trainer, len(train_set), resume_path)
    trainer.train()
    trainer.log.close()
    result = {
        "step": trainer.step,
        "checkpoint": str(checkpoints.path or output_dir / LAST),
        "output_dir": str(output_dir),
        "skipped_steps": trainer.skipped,
        "loss": trainer.log.last_loss,
        "first_loss": trainer.log.first_loss,
        "images_per_s": trainer.log.mean_images_per_s(),
        "rank_weight_difference": agreement.difference,
        **{k: v for k, v in validation.latest.items() if isinstance(v, float | int)},
    }
    if main:
        (output_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------------------------
# Building the run from its config


def _build_datasets(cfg: Config) -> tuple:
    """The training split, and the validation split if ``train.validate``."""
    train_set = build_train_dataset(cfg)
    if len(train_set) < cfg.train.batch_size:
        raise DataError(
            f"{cfg.data.name} {cfg.data.train_split}: {len(train_set)} images, fewer than one batch "
            f"(train.batch_size={cfg.train.batch_size})"
        )
    val_set = build_val_dataset(cfg) if cfg.train.validate else None
    return train_set, val_set


def _build_trainer(
    cfg: Config, device: torch.device, train_set, stop_at_step: int | None
) -> Trainer:
    """Segmenter + AGMMLoss (DDP-wrapped with several processes), optimiser, scheduler, scaler and
    the resumable data order, in a :class:`Trainer` without hooks."""
    world, rank = dist_utils.world_size(), dist_utils.rank()
    num_classes = int(train_set.num_classes)
    model = build_segmenter(cfg, num_classes).to(device)
    if uses_channels_last(cfg.train.channels_last, device):  # NHWC: faster convolutions on CPUs
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg, model, num_classes).to(device)
    step_module = TrainStep(model, loss_fn, cam_seeds=_cam_seed_fn(cfg, train_set))
    if world > 1 and device.type == "cuda" and cfg.train.sync_bn:
        step_module = nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
    ddp = step_module  # what a step calls; DDP-wrapped when there are several processes
    if world > 1:
        ddp = DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=_may_leave_parameters_unused(cfg),
        )
    optimizer = build_optimizer(step_module.model, step_module.loss_fn, cfg.train)
    amp_dtype = _amp_dtype(cfg, device)
    sampler = ResumableSampler(train_set, num_replicas=world, rank=rank, seed=cfg.seed)
    loader = DataLoader(
        SeededDataset(train_set, cfg.seed),
        batch_size=cfg.train.batch_size // world,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=_collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # worker seeds must not consume the global RNG stream
    )
    cam_warmup = cfg.loss.cam_warmup_steps if step_module.cam_seeds is not None else 0
    return Trainer(
        step_module=step_module,
        ddp=ddp,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.train),
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        loader=loader,
        sampler=sampler,
        device=device,
        amp_dtype=amp_dtype,
        settings=cfg.train,
        cam_warmup=cam_warmup,
        gmm_warmup=cam_warmup + cfg.loss.gmm_warmup_steps,  # the GMM needs labeled pixels first
        header={
            "config": config_dict(cfg),
            "classes": list(train_set.classes),
            "num_classes": num_classes,
            "palette": np.asarray(train_set.palette).astype(int).tolist(),
        },
        stop_at_step=stop_at_step,
    )


def _start_run_folder(cfg: Config, trainer: Trainer, num_images: int, resume_path) -> None:
    """Main process: the run's ``config.yaml`` and the first log line."""
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(dump_config(cfg))
    amp_dtype = trainer.amp_dtype
    precision = "float32" if amp_dtype is None else str(amp_dtype).replace("torch.", "")
    where = f"{dist_utils.world_size()} process(es) on {trainer.device.type}, {precision} autocast"
    if trainer.channels_last:
        where += ", channels_last"
    trainer.log.message(
        f"agmm train: {cfg.name or 'run'} on {cfg.data.name}/{cfg.data.supervision}, {num_images} "
        f"images, {trainer.header['num_classes']} classes, {where}, "
        f"steps {trainer.step}->{cfg.train.steps}"
        + (f", resumed from {resume_path}" if resume_path else "")
    )


def _with_box_seeds(cfg: Config) -> Config:
    """Boxes without seed files: GrabCut seeds written once (main process, cached) to
    ``output_dir/box_seeds``, which becomes the run's ``data.weak_label_dir``."""
    out_dir = Path(cfg.output_dir) / "box_seeds"
    if dist_utils.is_main():
        write_box_seed_folder(cfg, out_dir)
    dist_utils.barrier()
    data = dataclasses.replace(cfg.data, weak_label_dir=str(out_dir))
    return dataclasses.replace(cfg, data=data)


def _collate(samples: list[dict]) -> dict:
    return collate_batch(samples)


def _amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training step, None = float32.

    CUDA: fp16 or bf16 as configured, ``auto`` = bf16 where supported. CPU: ``bf16``, or ``auto``
    where the CPU computes bf16 natively (AVX-512 BF16 or AMX: 1.2-2x faster steps, see
    docs/training.md); ``fp16`` is a CUDA-only choice. The GMM runs in float32 either way.
    """
    amp = cfg.train.amp
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "fp16":
            return torch.float16
        if amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if device.type == "cpu":
        if amp == "fp16":
            raise ConfigError("train.amp=fp16 needs CUDA; on a CPU use bf16, auto or off")
        if amp == "bf16" or cpu_has_native_bf16():
            return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX-512 BF16 or AMX; Linux flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap, reliable way to tell, so stay in float32
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _may_leave_parameters_unused(cfg: Config) -> bool:
    """Whether some parameters can get no gradient in a step (DDP must then search for them).

    The squeeze conv is unused without the GMM, with stopped GMM gradients and during the GMM
    warm-up, and the tags path switches between classification-only and full steps.
    """
    gmm_trains_squeeze = (
        cfg.loss.enabled
        and not cfg.loss.stop_gradient
        and (
            cfg.loss.use_weak
            or cfg.loss.use_con
            or (cfg.loss.use_self and cfg.loss.pseudo_labels == "gmm")
        )
    )
    return cfg.use_cls_head or not gmm_trains_squeeze or cfg.loss.gmm_warmup_steps > 0


def _cam_seed_fn(cfg: Config, dataset):
    """For image tags: ``(cams, tags, size) -> weak labels (B, H, W)`` from agmm.seeds, else None."""
    if cfg.data.supervision != "tags":
        return None
    options = dict(cfg.loss.cam_args)
    options.setdefault("has_background", bool(getattr(dataset, "has_background", False)))

    def seeds(cams: torch.Tensor, tags: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        extra = {}
        if options.get("refine") == "crf":  # the CRF looks at the image colours
            extra["images"] = np.stack([denormalize_image(image) for image in images])
        return cam_seeds(cams, tags, image_size=tuple(images.shape[-2:]), **options, **extra)

    return seeds


def _validate(model: nn.Module, val_set, cfg: Config, device: torch.device) -> dict:
    """Segmentation mIoU on the validation split (every rank evaluates a shard)."""
    result = evaluate(
        model,
        val_set,
        scales=tuple(cfg.eval.scales),
        flip=cfg.eval.flip,
        sliding=cfg.eval.sliding,
        crf=cfg.eval.crf or None,
        batch_size=cfg.eval.batch_size,
        device=device,
        progress=False,
    )
    model.train()
    return {"val/miou": float(result["miou"]), "val/pixel_acc": float(result["pixel_acc"])}
