"""The training loop: build, loop (forward -> AGMMLoss -> backward -> step), log, checkpoint, validate.

The same code runs one process on a CPU and N processes under ``torchrun`` (DDP): distributed
details live in :mod:`agmm.runtime.distributed` and are no-ops in a single process.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from agmm.config import Config, dump_config, validate_paths
from agmm.data import build_dataset
from agmm.data.collate import collate_batch
from agmm.data.transforms import denormalize_image
from agmm.engine.build import build_train_dataset, build_val_dataset
from agmm.engine.optim import build_optimizer, build_scheduler
from agmm.engine.sampler import ResumableSampler, SeededDataset
from agmm.errors import AGMMError, CheckpointError, ConfigError, DataError
from agmm.eval import evaluate
from agmm.eval.pseudo_labels import PseudoLabelQuality
from agmm.gmm.build import build_loss
from agmm.models.build import build_segmenter
from agmm.runtime import distributed as dist_utils
from agmm.runtime.checkpoint import (
    FORMAT,
    LAST,
    capture_rng,
    config_dict,
    load_checkpoint,
    load_state_dict_checked,
    resolve_resume,
    restore_rng,
    write_run_checkpoint,
)
from agmm.runtime.constants import IGNORE_INDEX
from agmm.seeds import box_cache
from agmm.seeds.cam import cam_seeds

TERMS = ("seg", "self", "weak", "con", "cls")


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
        )
        return outputs, losses


def train(
    cfg: Config, *, resume: str | Path | None = None, stop_at_step: int | None = None
) -> dict:
    """Train the model of ``cfg``; returns the final metrics and the checkpoint path.

    ``resume``: a checkpoint file or run folder to continue from, or ``"auto"`` (the run's own
    ``last.pt`` if it exists). ``stop_at_step``: stop (after checkpointing) at this step, as a
    time-boxed job would; a later ``resume`` continues to the same result as one uninterrupted run.
    Under ``torchrun`` every process calls this; rank 0 logs and writes files.

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
        return _train(cfg, device, resume, stop_at_step)
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


def _train(cfg: Config, device: torch.device, resume, stop_at_step: int | None) -> dict:
    world, rank, main = dist_utils.world_size(), dist_utils.rank(), dist_utils.is_main()
    if cfg.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} images do not split evenly over {world} processes"
        )
    per_rank_batch = cfg.train.batch_size // world
    output_dir = Path(cfg.output_dir)
    resume_path = resolve_resume(resume, output_dir)

    # ---- build -------------------------------------------------------------------------------
    if cfg.data.supervision == "boxes" and cfg.data.weak_label_dir is None:
        cfg = _with_box_seeds(cfg)
    seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
    train_set = build_train_dataset(cfg)
    num_classes = int(train_set.num_classes)
    if len(train_set) < cfg.train.batch_size:
        raise DataError(
            f"{cfg.data.name} {cfg.data.train_split}: {len(train_set)} images, fewer than one batch "
            f"(train.batch_size={cfg.train.batch_size})"
        )
    val_set = build_val_dataset(cfg) if cfg.train.validate else None
    model = build_segmenter(cfg, num_classes).to(device)
    if cfg.train.channels_last:  # NHWC convolutions: faster with bf16 on CPUs with AMX
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg, model, num_classes).to(device)
    step_module = TrainStep(model, loss_fn, cam_seeds=_cam_seed_fn(cfg, train_set))
    if world > 1 and device.type == "cuda" and cfg.train.sync_bn:
        step_module = nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
        model, loss_fn = step_module.model, step_module.loss_fn
    ddp = step_module  # what the loop calls; DDP-wrapped when there are several processes
    if world > 1:
        ddp = DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=_may_leave_parameters_unused(cfg),
        )
    ema = _build_ema(model, cfg)
    eval_model = ema.module if ema is not None else model  # validated and saved as "model"
    optimizer = build_optimizer(model, loss_fn, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train)
    amp_dtype = _amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    sampler = ResumableSampler(train_set, num_replicas=world, rank=rank, seed=cfg.seed)
    loader = DataLoader(
        SeededDataset(train_set, cfg.seed),
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=_collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # worker seeds must not consume the global RNG stream
    )

    step, epoch, position, skipped = 0, 0, 0, 0
    if resume_path is not None:
        state = load_checkpoint(resume_path, map_location=device)
        if int(state["num_classes"]) != num_classes:
            raise CheckpointError(
                f"{resume_path}: checkpoint has {state['num_classes']} classes, "
                f"dataset {cfg.data.name} has {num_classes}"
            )
        # With an EMA, "model" holds the averaged weights and "model_train" the trained ones.
        trained = state.get("model_train", state["model"])
        load_state_dict_checked(model, trained, resume_path, "model")
        if ema is not None:
            if "model_train" not in state:
                raise CheckpointError(
                    f"{resume_path}: train.ema_decay={cfg.train.ema_decay} but the checkpoint has "
                    "no averaged weights (it was trained without an EMA)"
                )
            load_state_dict_checked(ema.module, state["model"], resume_path, "EMA model")
        load_state_dict_checked(loss_fn, state["loss_module"], resume_path, "GMM loss module")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, skipped = int(state["step"]), int(state.get("skipped_steps", 0))
        epoch, position = int(state["sampler"]["epoch"]), int(state["sampler"]["position"])
        restore_rng(state["rng"])
    else:
        torch.manual_seed(cfg.seed + rank)  # different dropout per rank, reproducible per run

    log = RunLogger(cfg, output_dir, enabled=main, start_step=step)
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(dump_config(cfg))
        precision = "float32" if amp_dtype is None else str(amp_dtype).replace("torch.", "")
        where = f"{world} process(es) on {device.type}, {precision} autocast"
        if cfg.train.channels_last:
            where += ", channels_last"
        log.message(
            f"agmm train: {cfg.name or 'run'} on {cfg.data.name}/{cfg.data.supervision}, {len(train_set)} "
            f"images, {num_classes} classes, {where}, steps {step}->{cfg.train.steps}"
            + (f", resumed from {resume_path}" if resume_path else "")
        )
    pseudo = PseudoLabelTracker(num_classes, device) if cfg.train.track_pseudo_labels else None
    cam_warmup = cfg.loss.cam_warmup_steps if step_module.cam_seeds is not None else 0
    gmm_warmup = cam_warmup + cfg.loss.gmm_warmup_steps  # the GMM needs labeled pixels first

    def checkpoint_state() -> dict:
        return {
            "format": FORMAT,
            "step": step,
            "model": eval_model.state_dict(),
            **({"model_train": model.state_dict()} if ema is not None else {}),
            "loss_module": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": capture_rng(),
            "sampler": {"epoch": epoch, "position": position},
            "skipped_steps": skipped,
            "config": config_dict(cfg),
            "classes": list(train_set.classes),
            "num_classes": num_classes,
            "palette": np.asarray(train_set.palette).astype(int).tolist(),
        }

    def save() -> Path | None:
        if not main:
            return None
        return write_run_checkpoint(checkpoint_state(), output_dir, keep=cfg.train.keep_checkpoints)

    def validate_now() -> dict:
        dist_utils.broadcast_buffers(step_module)  # rank 0's BatchNorm statistics everywhere
        metrics = {}
        if pseudo is not None:
            metrics.update(pseudo.compute_and_reset())
        if val_set is not None:
            if ema is not None:
                dist_utils.broadcast_buffers(ema.module)
            metrics.update(_validate(eval_model, val_set, cfg, device))
        log.scalars(step, metrics)
        return metrics

    # ---- loop --------------------------------------------------------------------------------
    model.train()
    loss_fn.train()
    checkpoint_path, metrics = None, {}
    window = LossWindow(device)
    batches = _batches(loader, sampler, epoch, position)
    while step < cfg.train.steps:
        epoch, position, batch = next(batches)
        batch = _to_device(batch, device)
        if cfg.train.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            outputs, losses = ddp(
                batch["image"],
                batch["weak_label"],
                tags=batch["tags"],
                valid_mask=batch["valid_mask"],
                use_cam_seeds=step >= cam_warmup,
                use_gmm=step >= gmm_warmup,
            )
        loss = losses["loss"]
        # Every rank must agree to skip, or DDP's gradient all-reduce would wait forever.
        non_finite = dist_utils.all_reduce_sum(
            torch.tensor([float(not torch.isfinite(loss))], device=device)
        )
        optimizer.zero_grad(set_to_none=True)
        if non_finite.item() > 0:
            skipped += 1
            log.message(
                f"step {step + 1}: loss is not finite ({loss.item()}), step skipped ({skipped} so far)"
            )
            if skipped > cfg.train.max_skipped_steps:
                raise NonFiniteLossError(
                    f"{skipped} training steps had a non-finite loss (train.max_skipped_steps="
                    f"{cfg.train.max_skipped_steps}); last terms: {_floats(losses['terms'])}. "
                    "Try a lower train.lr, train.amp=off or train.grad_clip."
                )
        else:
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(ddp.parameters(), cfg.train.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if ema is not None:  # timm counts updates from 1 (decay 0 at the first)
                ema.update(model, step=step + 1)
            window.add(loss, losses["terms"], images=batch["image"].shape[0])
            if pseudo is not None:
                pseudo.update(outputs, losses, batch)
        lr = optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
        step += 1

        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            log.train(step, window.compute_and_reset(), lr=lr, skipped=skipped)
        else:
            log.advance(step)
        if (cfg.train.val_every and step % cfg.train.val_every == 0) or step == cfg.train.steps:
            metrics = validate_now()
        stopping = stop_at_step is not None and step >= stop_at_step
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps or stopping:
            checkpoint_path = save()
        if stopping:
            break
    # DDP keeps the copies identical; a difference here means a bug (e.g. an unsynchronised buffer).
    dist_utils.broadcast_buffers(step_module)
    rank_difference = dist_utils.max_difference_across_ranks(_weight_checksums(step_module))
    if rank_difference > 0:
        log.message(
            f"warning: model weights differ across processes by up to {rank_difference:.3g}"
        )
    log.close()
    result = {
        "step": step,
        "checkpoint": str(checkpoint_path) if checkpoint_path else str(output_dir / "last.pt"),
        "output_dir": str(output_dir),
        "skipped_steps": skipped,
        "loss": log.last_loss,
        "first_loss": log.first_loss,
        "images_per_s": log.mean_images_per_s(),
        "rank_weight_difference": rank_difference,
        **{k: v for k, v in metrics.items() if isinstance(v, float | int)},
    }
    if main:
        (output_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------------------------
# Pieces of the loop


def _batches(loader: DataLoader, sampler: ResumableSampler, epoch: int, position: int):
    """Endless ``(epoch, position after this batch, batch)``, starting at batch ``position`` of ``epoch``."""
    while True:
        sampler.set_epoch(epoch, start=position * loader.batch_size)
        for batch in loader:
            position += 1
            yield epoch, position, batch
        epoch, position = epoch + 1, 0


def _collate(samples: list[dict]) -> dict:
    return collate_batch(samples)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }


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


def _with_box_seeds(cfg: Config) -> Config:
    """Boxes without seed files: GrabCut seeds computed once (main process, cached), then used as
    the weak labels (``data.weak_label_dir``)."""
    out_dir = Path(cfg.output_dir) / "box_seeds"
    if dist_utils.is_main():
        dataset = build_dataset(
            cfg.data.name,
            root=cfg.data.root,
            split=cfg.data.train_split,
            supervision="boxes",
            weak_label_args=cfg.data.weak_label_args,
            seed=cfg.seed,
            **cfg.data.dataset_args,
        )
        cache = cfg.data.box_seed_cache or Path.home() / ".cache" / "agmm" / "box_seeds"
        options = {"workers": max(1, cfg.data.num_workers), **cfg.data.box_seed_args}
        box_cache.compute_box_seeds(dataset, cache, out_dir=out_dir, **options)
        # The boxes themselves stay available to the training set, as JSON sidecars of the PNGs.
        for index in range(len(dataset)):
            sample = dataset[index]
            boxes = np.asarray(sample["boxes"], dtype=float).reshape(-1, 5).tolist()
            (out_dir / f"{sample['name']}.json").write_text(json.dumps({"boxes": boxes}))
    dist_utils.barrier()
    data = dataclasses.replace(cfg.data, weak_label_dir=str(out_dir))
    return dataclasses.replace(cfg, data=data)


def _build_ema(model: nn.Module, cfg: Config):
    """timm's weight EMA of the segmenter, or None when ``train.ema_decay`` is 0."""
    if not cfg.train.ema_decay:
        return None

    return ModelEmaV3(model, decay=cfg.train.ema_decay, use_warmup=True)


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


def _weight_checksums(module: nn.Module) -> torch.Tensor:
    """One float64 sum per parameter and floating buffer: equal on all ranks iff (almost surely)
    the weights are."""
    tensors = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]
    return torch.stack([t.detach().double().sum() for t in tensors])


def _floats(terms: dict) -> dict:
    return {name: round(float(value), 4) for name, value in terms.items()}


class LossWindow:
    """Sums of the loss terms over the steps since the last log line (averaged over ranks)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(TERMS) + 1, device=self.device, dtype=torch.float64)
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, terms: dict, *, images: int) -> None:
        values = [loss.detach()] + [
            torch.as_tensor(terms.get(name, 0.0)).detach() for name in TERMS
        ]
        self.sums += torch.stack([v.to(self.device, torch.float64).reshape(()) for v in values])
        self.steps += 1
        self.images += images

    def compute_and_reset(self) -> dict:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        totals = torch.cat(
            [
                self.sums,
                torch.tensor([self.steps, self.images], device=self.device, dtype=torch.float64),
            ]
        )
        dist_utils.all_reduce_sum(totals)
        steps, images = totals[-2].item(), totals[-1].item()
        out = {"images_per_s": images / elapsed}
        if steps > 0:
            means = (totals[:-2] / steps).tolist()
            out.update(loss=means[0], **dict(zip(TERMS, means[1:])))
        self.reset()
        return out


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


class RunLogger:
    """Progress bar, TensorBoard scalars and ``metrics.jsonl`` (one JSON object per log line).

    Only the main process writes; on the others every method is a no-op. A resumed run
    (``start_step > 0``) first drops the lines logged after its checkpoint (they will be logged
    again), and continues the run's ``time`` and ``first_loss`` from the kept lines, so that the
    log of an interrupted run equals that of an uninterrupted one.
    """

    #: Loggers not yet closed; ``train`` closes them when a run fails.
    live: set[RunLogger] = set()

    def __init__(self, cfg: Config, output_dir: Path, *, enabled: bool, start_step: int) -> None:
        self.enabled = enabled
        self.first_loss = None
        self.last_loss = None
        self.rates: list[float] = []
        self.bar = self.writer = self.jsonl = None
        if not enabled:
            return

        output_dir.mkdir(parents=True, exist_ok=True)
        kept = _kept_log_lines(output_dir / "metrics.jsonl", start_step)
        self.first_loss = next((line["train/loss"] for line in kept if "train/loss" in line), None)
        elapsed = kept[-1].get("time", 0.0) if kept else 0.0
        with open(output_dir / "metrics.jsonl", "w") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in kept)
        self.jsonl = open(output_dir / "metrics.jsonl", "a")
        RunLogger.live.add(self)
        if cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(output_dir / "tensorboard"), purge_step=start_step or None
            )
        self.bar = tqdm(
            total=cfg.train.steps,
            initial=start_step,
            desc="train",
            unit="step",
            disable=not cfg.train.progress_bar,
            dynamic_ncols=True,
        )
        self.started = time.time() - elapsed

    def message(self, text: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(text)

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def train(self, step: int, window: dict, *, lr: float, skipped: int) -> None:
        if "loss" in window:
            self.first_loss = window["loss"] if self.first_loss is None else self.first_loss
            self.last_loss = window["loss"]
        self.rates.append(window["images_per_s"])
        scalars = {f"train/{key}": value for key, value in window.items() if key != "images_per_s"}
        scalars.update(
            {"lr": lr, "images_per_s": window["images_per_s"], "train/skipped_steps": skipped}
        )
        self.scalars(step, scalars)
        if self.bar is not None:
            shown = {k: f"{window[k]:.3f}" for k in ("loss", *TERMS) if window.get(k)}
            shown.update(lr=f"{lr:.2e}", img_s=f"{window['images_per_s']:.1f}")
            if skipped:
                shown["skipped"] = str(skipped)
            self.bar.set_postfix(shown, refresh=False)
            self.advance(step)

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled or not values:
            return
        values = {
            k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))
        }
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        self.jsonl.write(
            json.dumps({"step": step, "time": round(time.time() - self.started, 3), **values})
            + "\n"
        )
        self.jsonl.flush()
        if any(key.startswith(("val/", "pseudo/")) for key in values):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            self.message(f"step {step}: {shown}")

    def mean_images_per_s(self) -> float | None:
        rates = self.rates[1:] or self.rates  # the first window includes start-up
        return float(np.mean(rates)) if rates else None

    def close(self) -> None:
        RunLogger.live.discard(self)
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


def _kept_log_lines(path: Path, start_step: int) -> list[dict]:
    """The ``metrics.jsonl`` lines of steps up to ``start_step`` (none for a new run)."""
    if start_step == 0 or not path.is_file():
        return []
    kept = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if int(line.get("step", 0)) <= start_step:
            kept.append(line)
    return kept


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet TensorBoard's optional TensorFlow import
