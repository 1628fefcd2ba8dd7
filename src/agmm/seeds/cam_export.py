"""CAM seeds of a whole dataset from a trained model with a classification head (offline export)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from agmm.data.transforms import denormalize_image
from agmm.errors import CheckpointError, LabelError
from agmm.runtime.constants import IGNORE_INDEX
from agmm.seeds.cam import TOCO_HIGH, TOCO_LOW, cam_seeds
from agmm.seeds.quality import SeedQuality


@dataclass
class CamSeedRun:
    """What :func:`compute_cam_seeds` did. ``untagged``: images without any tag (their seed map is
    all 255: counted and reported, never silently dropped)."""

    paths: dict[str, Path] = field(default_factory=dict)
    untagged: list[str] = field(default_factory=list)
    quality: SeedQuality | None = None


def check_tags(tags, *, num_classes: int, source: str) -> torch.Tensor:
    """tags (K,) multi-hot -> float32 tensor; LabelError naming ``source`` when it does not fit."""
    tags = torch.as_tensor(tags, dtype=torch.float32).flatten()
    if tags.numel() != num_classes:
        raise LabelError(
            f"{source}: tags have {tags.numel()} entries but the dataset has {num_classes} classes"
        )
    if not bool(((tags == 0) | (tags == 1)).all()):
        raise LabelError(
            f"{source}: tags must be multi-hot 0/1, got values {tags.unique().tolist()}"
        )
    return tags


@torch.no_grad()
def multi_scale_cams(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    scales: tuple[float, ...] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """CAMs at several input scales (and mirrored), ReLU'd, upsampled to the input size and summed.

    images (B, 3, H, W) -> (B, K, H, W). ToCo's CAM inference uses scales (1.0, 0.5, 1.5) with flip.
    """
    height, width = images.shape[2:]
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        cams = F.relu(model(batch)["cams"].float())
        cams = F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)
        if flip:
            cams = cams[: len(images)] + cams[len(images) :].flip(-1)
        total = cams if total is None else total + cams
    return total


@torch.no_grad()
def compute_cam_seeds(
    model: torch.nn.Module,
    dataset,
    out_dir: str | Path,
    *,
    high: float = TOCO_HIGH,
    low: float = TOCO_LOW,
    margin: float = 0.1,
    refine: str | None = None,
    scales: tuple[float, ...] = (1.0,),
    flip: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> CamSeedRun:
    """Run ``model`` (with ``cls_head=True``) on every image, threshold its CAMs with the image's
    tags (:func:`agmm.seeds.cam.cam_seeds`) and write ``out_dir/<name>.png`` (uint8, 255 = ignore).

    ``scales`` / ``flip``: CAMs summed over input scales and mirroring (:func:`multi_scale_cams`).
    """
    if getattr(model, "cam_head", None) is None:
        raise CheckpointError(
            "the model has no classification head: train it with model.cls_head=true to get CAMs"
        )
    if getattr(model, "num_classes", dataset.num_classes) != dataset.num_classes:
        raise CheckpointError(
            f"the model predicts {model.num_classes} classes but the dataset has {dataset.num_classes}"
        )
    out_dir = Path(out_dir)
    model = model.to(device).eval()
    run = CamSeedRun(quality=SeedQuality(dataset.num_classes))
    for index in tqdm(range(len(dataset)), desc="CAM seeds", unit="img", disable=not progress):
        sample = dataset[index]
        name, source = str(sample["name"]), str(sample.get("image_path", sample["name"]))
        tags = check_tags(sample["tags"], num_classes=dataset.num_classes, source=source)
        image = sample["image"][None].to(device)
        cams = multi_scale_cams(model, image, scales=tuple(scales), flip=flip)
        raw = None
        if refine == "crf":  # the CRF looks at the colours of the image the model saw
            raw = denormalize_image(sample["image"])[None]
        seeds = cam_seeds(
            cams,
            tags[None].to(device),
            image_size=tuple(image.shape[2:]),
            has_background=dataset.has_background,
            high=high,
            low=low,
            margin=margin,
            refine=refine,
            images=raw,
        )[0]
        if tags.sum() == 0:
            run.untagged.append(name)
        seeds_u8 = seeds.cpu().numpy().astype(np.uint8)
        path = out_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(seeds_u8).save(path)
        run.paths[name] = path
        mask = sample.get("mask")
        if mask is not None and bool((torch.as_tensor(mask) != IGNORE_INDEX).any()):
            run.quality.update(seeds_u8, mask)
    if not run.quality.has_data:
        run.quality = None
    return run
