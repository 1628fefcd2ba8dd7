"""Image tags -> seeds through online class activation maps (CAMs), after ToCo (Ru et al., CVPR'23).

The model's classification branch (``build_model(..., cls_head=True)``) gives ``cls_logits`` (B, K),
trained with :func:`cam_loss` (L_cls), and ``cams`` (B, K, h, w). Every training step,
:func:`cam_seeds` turns the CAMs of each image's tagged classes into a seed map:

- ReLU, bilinear upsampling to the image size, division by each class map's maximum -> [0, 1];
- with a background class (VOC, COCO): a pixel whose best tagged class scores above ``high`` gets
  that class; a pixel where every tagged class scores at most ``low`` is background (0); the rest
  is ignored (255);
- without one (CamVid, Cityscapes): a pixel is seeded only where one tagged class clearly wins,
  i.e. scores at least ``high`` and beats every other tagged class by ``margin``; else 255.

Defaults ``high=0.7``, ``low=0.25`` are ToCo's released VOC settings (``--high_thre 0.7 --low_thre
0.25`` in ``scripts/dist_train_voc_seg_neg.py`` of github.com/rulixiang/ToCo); ``margin=0.1`` is our
choice. ToCo trains the classifier alone for its first 2000 of 20000 iterations before the seeds
supervise segmentation: the engine's ``loss.cam_warmup_steps`` (we suggest 10 % of the steps) does
that.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from agmm.eval.crf import crf_refine
from agmm.runtime.constants import IGNORE_INDEX

TOCO_HIGH = 0.7
TOCO_LOW = 0.25


def cam_loss(cls_logits: torch.Tensor, tags: torch.Tensor, *, has_background: bool = False):
    """L_cls: multi-label soft-margin loss. cls_logits, tags: (B, K) -> scalar.

    With ``has_background`` the background column (id 0) is left out: it is in (almost) every image
    and its CAM is never used (background seeds come from the low threshold).
    """
    if has_background:
        cls_logits, tags = cls_logits[:, 1:], tags[:, 1:]
    return F.multilabel_soft_margin_loss(cls_logits, tags.to(cls_logits.dtype))


def seedable_classes(tags: torch.Tensor, *, has_background: bool) -> torch.Tensor:
    """(B, K) multi-hot tags -> (B, K) bool: classes whose CAM may seed (background never does)."""
    tagged = tags > 0
    if has_background:
        tagged = tagged.clone()
        tagged[:, 0] = False
    return tagged


def _upsample_normalise(
    cams: torch.Tensor, seedable: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """cams (B, A, h, w), seedable (B, A) bool -> (B, A, H, W) in [0, 1], 0 where not seedable."""
    cams = F.interpolate(
        F.relu(cams.detach().float()), size=tuple(image_size), mode="bilinear", align_corners=False
    )
    peak = cams.amax(dim=(2, 3), keepdim=True)
    return cams / (peak + 1e-5) * seedable[:, :, None, None]


def normalise_cams(
    cams: torch.Tensor, tags: torch.Tensor, *, image_size: tuple[int, int], has_background: bool
) -> torch.Tensor:
    """cams (B, K, h, w) -> (B, K, H, W) in [0, 1]: ReLU, upsampled, divided by each map's max.

    Untagged classes (and the background channel when ``has_background``) are 0.
    """
    return _upsample_normalise(
        cams, seedable_classes(tags, has_background=has_background), image_size
    )


def threshold_cams(
    norm_cams: torch.Tensor,
    tags: torch.Tensor,
    *,
    has_background: bool,
    high: float = TOCO_HIGH,
    low: float = TOCO_LOW,
    margin: float = 0.1,
    ignore_index: int = IGNORE_INDEX,
    class_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """norm_cams (B, A, H, W) in [0, 1], 0 for untagged classes -> seeds (B, H, W) int64.

    ``class_ids`` (A,): the class of each channel; default: channel k is class k (A = K).
    """
    if class_ids is None:
        class_ids = torch.arange(norm_cams.shape[1], device=norm_cams.device)
    best, best_index = norm_cams.max(dim=1)
    best_class = class_ids[best_index]
    seeds = torch.full_like(best_class, ignore_index)
    if has_background:
        seeds = torch.where(best > high, best_class, seeds)
        seeds = torch.where(best <= low, torch.zeros_like(seeds), seeds)
    else:
        if norm_cams.shape[1] > 1:
            runner_up = norm_cams.topk(2, dim=1).values[:, 1]
        else:
            runner_up = torch.zeros_like(best)
        clear_winner = (best >= high) & (best - runner_up >= margin)
        seeds = torch.where(clear_winner, best_class, seeds)
    # An image without any tag: nothing is known about it, so it is all ignore.
    untagged_image = (tags > 0).sum(dim=1) == 0
    return seeds.masked_fill(untagged_image[:, None, None], ignore_index)


def cam_seeds(
    cams: torch.Tensor,
    tags: torch.Tensor,
    *,
    image_size: tuple[int, int],
    has_background: bool,
    high: float = TOCO_HIGH,
    low: float = TOCO_LOW,
    margin: float = 0.1,
    ignore_index: int = IGNORE_INDEX,
    refine: str | None = None,
    images: np.ndarray | torch.Tensor | None = None,
    crf_params: dict | None = None,
) -> torch.Tensor:
    """Seeds from CAMs and image tags (see the module docstring for the rule).

    Args:
        cams: (B, K, h, w) raw class activation maps (``model(x)["cams"]``); not differentiated.
        tags: (B, K) multi-hot image tags. An image without any tag is all ``ignore_index``.
        image_size: (H, W) of the seed maps (the input images).
        has_background: the dataset has a background class at id 0.
        high, low, margin: thresholds on the normalised CAMs.
        refine: ``None`` or ``"crf"``: refine the normalised CAMs with a dense CRF on the image
            (pydensecrf2) before thresholding; needs ``images``.
        images: (B, H, W, 3) uint8 RGB, only for ``refine="crf"``.
        crf_params: keyword arguments of :func:`agmm.eval.crf.crf_refine`.

    Returns:
        (B, H, W) int64 class ids, ``ignore_index`` where unsure; on ``cams``' device.
    """
    if refine not in (None, "crf"):
        raise ValueError(f"cam_seeds: refine must be None or 'crf', got {refine!r}")
    if refine == "crf" and images is None:
        raise ValueError("cam_seeds(refine='crf') needs the images (B, H, W, 3) uint8")
    tags = tags.to(cams.device)
    seedable = seedable_classes(tags, has_background=has_background)
    # Only classes tagged in some image of the batch are upsampled: (B, A, H, W), not (B, K, H, W)
    # (COCO: a batch holds a few of the 81 classes). With none, one all-zero channel stands in.
    class_ids = seedable.any(dim=0).nonzero().flatten()
    if class_ids.numel() == 0:
        class_ids = torch.zeros(1, dtype=torch.long, device=cams.device)
    norm_cams = _upsample_normalise(cams[:, class_ids], seedable[:, class_ids], image_size)
    if refine == "crf":
        norm_cams = crf_refine_cams(
            norm_cams,
            seedable[:, class_ids],
            class_ids,
            images,
            has_background=has_background,
            **(crf_params or {}),
        )
    return threshold_cams(
        norm_cams,
        tags,
        has_background=has_background,
        high=high,
        low=low,
        margin=margin,
        ignore_index=ignore_index,
        class_ids=class_ids,
    )


def crf_refine_cams(
    norm_cams: torch.Tensor,
    seedable: torch.Tensor,
    class_ids: torch.Tensor,
    images: np.ndarray | torch.Tensor,
    *,
    has_background: bool,
    **crf_params,
) -> torch.Tensor:
    """Dense-CRF refinement of normalised CAMs: (B, A, H, W) -> (B, A, H, W) CRF marginals.

    ``seedable`` (B, A) marks each image's tagged classes among ``class_ids`` (A,). Per image, the
    CRF runs over those classes (plus background scored ``1 - max CAM`` when the dataset has one,
    dropped afterwards: background still comes from the low threshold); their normalised scores are
    the unary probabilities. Other classes stay 0. One CRF per image: the loop is inherent.
    """
    images = images.cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    seedable, scores = seedable.cpu(), norm_cams.cpu()
    refined = torch.zeros_like(scores)
    for index in range(scores.shape[0]):
        channels = seedable[index].nonzero().flatten()
        if len(channels) == 0:  # nothing to refine: all zero -> background or ignore as before
            continue
        probs = scores[index, channels]
        if has_background:
            probs = torch.cat([1.0 - probs.amax(dim=0, keepdim=True), probs])
        probs = (probs + 1e-5) / (probs + 1e-5).sum(dim=0, keepdim=True)
        marginals = torch.from_numpy(
            crf_refine(np.ascontiguousarray(images[index]), probs.numpy(), **crf_params)
        )
        refined[index, channels] = marginals[1:] if has_background else marginals
    return refined.to(norm_cams.device)
