"""AGMMLoss: the AGMM++ GMM module and all its losses, as one drop-in ``nn.Module``."""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from agmm.gmm import functional as gmm_fn
from agmm.losses import (
    centre_contrastive_loss,
    classification_loss,
    confident_cross_entropy,
    partial_cross_entropy,
    self_supervision_loss,
    weak_loss,
)
from agmm.losses.contrastive import contrastive_at_rows, contrastive_positions
from agmm.losses.segmentation import REDUCTIONS, Reduction, labels_are_sparse

CON_KINDS = ("eq14", "eq13")
PSEUDO_LABEL_KINDS = ("gmm", "assign")
SELF_TARGETS = ("gmm", "gmm_x_p", "gmm_x_p_within")
SELF_LOSSES = ("bce", "ce")
TERM_NAMES = ("seg", "self", "weak", "con", "cls")


class AGMMLoss(nn.Module):
    """Adaptive GMM pseudo labels + L_seg, L_self, L_weak, L_con, L_cls (Eq. 1-17).

    Holds the only parameters of the GMM module, the 1x1 "squeeze" convolution (Sec. 3.2); the GMM
    itself is refitted for every image at every step from the weak labels. Training-only: the
    segmenter alone is used at inference.

    Example, bolted onto torchvision's DeepLabV3 (any model that gives decoder features and logits)::

        import torch, torchvision
        from agmm import AGMMLoss

        net = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21)
        features = {}
        net.classifier[3].register_forward_hook(lambda m, i, o: features.update(f=o))  # 256 channels
        criterion = AGMMLoss(in_channels=256, num_classes=21)
        optimizer = torch.optim.SGD([*net.parameters(), *criterion.parameters()], lr=1e-3)

        logits = net(images)["out"]                           # (B, 21, H, W)
        out = criterion(features["f"], logits, weak_labels)    # weak_labels: (B, H, W), 255 = unlabeled
        out["loss"].backward(); optimizer.step()
        print(out["terms"])                                    # {"seg": ..., "self": ..., ...}

    Args:
        in_channels: channels of the decoder features handed to ``forward``.
        num_classes: K, the number of classes of the dataset (logits' channels).
        embed_dim: channels after the squeeze convolution (C').
        distance: ``"l1"`` (mean |f - mu|) or ``"sqeuclid"`` (mean (f - mu)^2), Eq. 3.
        sigma_floor: lower bound of every sigma, so that one-pixel classes stay finite.
        oem_steps: online-EM M-steps (0 switches OEM off: G_new = G_old).
        responsibilities: ``"hard"`` (the one-hot arg-max of G_old over the present classes: the
            pixels "x in G_i^old" of Eq. 5-6, the default) or ``"soft"`` (G_old itself) in the
            M-step. Hard gave 1.4-1.6 mIoU more on CamVid over 3 seeds (docs/BENCHMARKS.md).
        stop_gradient: ablation of Table 15: the GMM sees detached features, G is a fixed target,
            and L_weak / L_con (which only train the GMM) are dropped.
        use_gmm: False gives the L_seg-only baseline (plus L_cls when tags are given).
        use_self, use_weak, use_con: switch single terms off (Tables 8, 12, 13).
        con: ``"eq14"`` (AGMM++) or ``"eq13"`` (the CVPR'23 centre-only L_con, "con_old").
        pseudo_labels: ``"gmm"`` (soft G in L_self) or ``"assign"`` (hard Eq. 18 labels with
            cross-entropy instead, the "label assignment" baseline of Table 15).
        self_resolution: grid of L_self: ``"feature"`` (P area-pooled to the GMM's grid, the
            default: 16x cheaper at stride 4, see docs/BENCHMARKS.md) or ``"label"`` (G upsampled
            bilinearly to every pixel, Eq. 11 literally).
        self_pooling: with ``self_resolution="feature"``, how P reaches the grid: ``"logits"``
            (the softmax of the cell's mean logit, the default: one pass over the full-resolution
            logits instead of a softmax of all K maps and its backward; 10x cheaper at K = 150,
            the same CamVid accuracy, docs/training.md "Speed") or ``"probs"`` (the mean of the
            cell's pixels' softmax).
        self_classes: classes of L_self: ``"present"`` (K_img only) or ``"all"`` (every class;
            G = 0 for absent classes, so P of a class the image does not contain is pushed to 0,
            as the CVPR'23 code's extra "cls_loss" does).
        posterior: use the mixture posteriors g_k / sum_j g_j as G (and as OEM responsibilities)
            instead of the paper's un-normalised g_k (see docs/method.md).
        sigma_prior: shrink every class's variance toward the image's pooled variance with a prior
            worth this many labeled pixels (0 = the paper's per-class estimate, Eq. 2). Not in the
            paper; see :func:`agmm.gmm.functional.fit_components` and docs/method.md.
        class_prior_momentum: > 0 keeps running class centres and variances in the GMM's feature
            space (EMA with this momentum, updated from every training batch's labeled pixels) and
            gives each class of the image (``image_classes`` in ``forward``) that has no labeled
            pixel in the crop a component from them; 0 = the paper (components from the crop's own
            labels only). See :func:`agmm.gmm.functional.add_prior_components`.
        self_target: target of L_self: ``"gmm"`` (G_new, Eq. 11) or ``"gmm_x_p"`` (G_new times
            the segmenter's detached P, normalised over the present classes; not in the paper,
            see :func:`agmm.gmm.functional.product_target`), or ``"gmm_x_p_within"`` (the same
            rescaled to P's mass on the present classes).
        self_loss: ``"bce"`` (Eq. 11: BCE of P against the soft target, every position) or
            ``"ce"`` (cross-entropy of P on the target's arg-max, only where the target reaches
            ``self_threshold``; not in the paper, see
            :func:`agmm.losses.gmm_terms.confident_cross_entropy`). With ``"ce"`` no gradient
            reaches G through L_self.
        self_threshold: the confidence a position's target needs to count in ``self_loss="ce"``.
        seg_reduction: ``"pixel"`` (mean over labeled pixels, Eq. 10) or ``"class"`` (mean of the
            per-class means: every class labeled in the batch weighs the same; for dense masks).
        self_reduction: ``"pixel"`` (mean over (pixel, present class) pairs, Eq. 11) or ``"class"``
            (per image and class, the G-weighted positive and (1 - G)-weighted negative means).
        lambda_*: weights of Eq. 15-17.
        ignore_index: the unlabeled value in weak label maps.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        embed_dim: int = 64,
        distance: gmm_fn.Distance = "sqeuclid",
        sigma_floor: float = 0.05,
        oem_steps: int = 1,
        responsibilities: Literal["soft", "hard"] = "hard",
        stop_gradient: bool = False,
        use_gmm: bool = True,
        use_self: bool = True,
        use_weak: bool = True,
        use_con: bool = True,
        con: Literal["eq14", "eq13"] = "eq14",
        pseudo_labels: Literal["gmm", "assign"] = "gmm",
        self_resolution: Literal["feature", "label"] = "feature",
        self_pooling: Literal["probs", "logits"] = "logits",
        self_classes: Literal["present", "all"] = "present",
        posterior: bool = False,
        sigma_prior: float = 0.0,
        class_prior_momentum: float = 0.0,
        self_target: Literal["gmm", "gmm_x_p", "gmm_x_p_within"] = "gmm",
        self_loss: Literal["bce", "ce"] = "bce",
        self_threshold: float = 0.8,
        seg_reduction: Reduction = "pixel",
        self_reduction: Reduction = "pixel",
        lambda_seg: float = 1.0,
        lambda_gmm: float = 1.0,
        lambda_self: float = 1.0,
        lambda_weak: float = 1.0,
        lambda_con: float = 1.0,
        lambda_cls: float = 1.0,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        _check_choice("distance", distance, gmm_fn.DISTANCES)
        _check_choice("responsibilities", responsibilities, ("soft", "hard"))
        _check_choice("con", con, CON_KINDS)
        _check_choice("pseudo_labels", pseudo_labels, PSEUDO_LABEL_KINDS)
        _check_choice("self_resolution", self_resolution, ("feature", "label"))
        _check_choice("self_pooling", self_pooling, ("probs", "logits"))
        _check_choice("self_classes", self_classes, ("present", "all"))
        _check_choice("seg_reduction", seg_reduction, REDUCTIONS)
        _check_choice("self_reduction", self_reduction, REDUCTIONS)
        if oem_steps < 0:
            raise ValueError(f"oem_steps must be >= 0, got {oem_steps}")
        if sigma_floor <= 0:
            raise ValueError(f"sigma_floor must be > 0, got {sigma_floor}")
        if sigma_prior < 0:
            raise ValueError(f"sigma_prior must be >= 0, got {sigma_prior}")
        _check_choice("self_target", self_target, SELF_TARGETS)
        _check_choice("self_loss", self_loss, SELF_LOSSES)
        if not 0.0 <= self_threshold <= 1.0:
            raise ValueError(f"self_threshold must be in [0, 1], got {self_threshold}")
        if not 0.0 <= class_prior_momentum < 1.0:
            raise ValueError(f"class_prior_momentum must be in [0, 1), got {class_prior_momentum}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.squeeze = nn.Conv2d(in_channels, embed_dim, kernel_size=1)
        self.distance = distance
        self.sigma_floor = sigma_floor
        self.oem_steps = oem_steps
        self.responsibilities = responsibilities
        self.stop_gradient = stop_gradient
        self.use_gmm = use_gmm
        self.use_self = use_self
        self.use_weak = use_weak and not stop_gradient
        self.use_con = use_con and not stop_gradient
        self.con = con
        self.pseudo_labels = pseudo_labels
        self.self_resolution = self_resolution
        self.self_pooling = self_pooling
        self.self_classes = self_classes
        self.posterior = posterior
        self.sigma_prior = sigma_prior
        self.class_prior_momentum = class_prior_momentum
        if class_prior_momentum > 0:
            # Running class statistics (ClassPrior): saved with the module, so resume is exact.
            # Only with the option on, so that other checkpoints keep their keys.
            self.register_buffer("prior_mu", torch.zeros(num_classes, embed_dim))
            self.register_buffer("prior_variance", torch.ones(num_classes))
            self.register_buffer("prior_seen", torch.zeros(num_classes, dtype=torch.bool))
        self.self_target = self_target
        self.self_loss = self_loss
        self.self_threshold = self_threshold
        self.seg_reduction = seg_reduction
        self.self_reduction = self_reduction
        self.lambdas = {
            "seg": lambda_seg,
            "self": lambda_gmm * lambda_self,
            "weak": lambda_gmm * lambda_weak,
            "con": lambda_gmm * lambda_con,
            "cls": lambda_cls,
        }
        self.ignore_index = ignore_index

    def fit_gmm(
        self,
        features: torch.Tensor,
        weak_labels: torch.Tensor,
        valid_mask: torch.Tensor | None = None,
        *,
        image_classes: torch.Tensor | None = None,
        pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        num_classes: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Fit the per-image mixtures and run OEM; no loss. Useful for pictures and pseudo labels.

        ``image_classes`` (B, K): the classes each image contains (used with
        ``class_prior_momentum``). ``pixels``: the labeled pixels' ``(b, y, x)`` indices, if the
        caller has them already; ``num_classes``: K of ``weak_labels`` when it is not the module's
        (``forward`` fits only the batch's classes). Returns ``gmm_old``/``gmm_new`` (B, K, h, w),
        ``present`` (B, K: the classes with a component), ``labeled`` (B, K: the classes labeled),
        ``embeddings`` (B, C', h, w), the fitted ``old``/``new`` :class:`GMMParams` and the label
        weights (B, K, N).
        """
        batch, _, height, width = features.shape
        num_classes = num_classes or self.num_classes
        device_type = features.device.type
        # The squeeze is a layer of the network like the decoder's: under autocast it runs in
        # autocast's precision (bf16 on AMX CPUs: 10 % of the GMM's cost at K = 11, see
        # docs/training.md "Speed"). The GMM itself runs in the module's precision (float32, or
        # float64 in tests) on its output, even under AMP.
        if not torch.is_autocast_enabled(device_type):
            features = features.to(self.squeeze.weight.dtype)
        feats = self._squeeze(features).to(self.squeeze.weight.dtype)  # (B, C', N)
        with torch.autocast(device_type=device_type, enabled=False):
            if self.stop_gradient:
                feats = feats.detach()
            embeddings = feats.view(batch, -1, height, width)
            label_weights = gmm_fn.pool_labels(
                weak_labels,
                num_classes,
                (height, width),
                ignore_index=self.ignore_index,
                dtype=feats.dtype,
                pixels=pixels,
            )
            labeled = label_weights.sum(dim=2) > 0
            valid_weights = None
            if valid_mask is not None:
                valid_weights = gmm_fn.pool_valid_mask(
                    valid_mask, (height, width), dtype=feats.dtype
                )
            # label_weights are fractions of a feature cell: a prior of n labeled pixels is
            # n / cell_area units of responsibility.
            cell_area = weak_labels.shape[1] * weak_labels.shape[2] / (height * width)
            class_prior = None
            if self.class_prior_momentum > 0 and image_classes is not None:
                class_prior = gmm_fn.ClassPrior(self.prior_mu, self.prior_variance, self.prior_seen)
                image_classes = image_classes.to(torch.bool)
            old, new = gmm_fn.online_em(
                feats,
                label_weights,
                labeled,
                valid_weights=valid_weights,
                steps=self.oem_steps,
                responsibilities=self.responsibilities,
                distance=self.distance,
                sigma_floor=self.sigma_floor,
                posterior=self.posterior,
                prior_mass=self.sigma_prior / cell_area,
                image_classes=image_classes,
                class_prior=class_prior,
            )
            if self.class_prior_momentum > 0 and self.training:
                self._update_class_prior(old, label_weights)
        grid = (batch, num_classes, height, width)
        gmm_old = old.probs.view(grid)
        return {
            "gmm_old": gmm_old,
            "gmm_new": gmm_old if new is old else new.probs.view(grid),
            "present": new.present,
            "labeled": labeled,
            "embeddings": embeddings,
            "old": old,
            "new": new,
            "label_weights": label_weights,
        }

    def _squeeze(self, features: torch.Tensor) -> torch.Tensor:
        """The 1x1 squeeze convolution as matrix products: (B, C, h, w) -> (B, C', N).

        Same maths as ``self.squeeze(features).flatten(2)``, with a 1.5-3x cheaper backward on
        CPU than the 1x1 convolution and no copy of the features in either layout
        (:func:`gmm_fn.squeeze_rows`; docs/training.md "Speed").
        """
        rows = gmm_fn.squeeze_rows(features, self.squeeze.weight.flatten(1), self.squeeze.bias)
        return rows.transpose(1, 2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Some checkpoints carry the class-prior buffers although the option was off (they were
        # registered unconditionally for a while): unused there, so they are dropped.
        if self.class_prior_momentum == 0:
            for name in ("prior_mu", "prior_variance", "prior_seen"):
                state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def _update_class_prior(self, old: gmm_fn.GMMParams, label_weights: torch.Tensor) -> None:
        """EMA of the class centres and variances of this batch's labeled pixels (all processes),
        read off the E-step fit ``old`` (its labeled classes' centres come from these labels)."""
        mass, weighted_mu, weighted_var = gmm_fn.class_statistics(
            old, label_weights, sigma_floor=self.sigma_floor
        )
        totals = torch.cat([mass[:, None], weighted_mu, weighted_var[:, None]], dim=1)  # (K, C+2)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)  # every process keeps the same prior
        mass, weighted_mu, weighted_var = totals[:, 0], totals[:, 1:-1], totals[:, -1]
        seen_now = mass > 0
        batch_mu = weighted_mu / mass.clamp_min(1e-8)[:, None]
        batch_var = weighted_var / mass.clamp_min(1e-8)
        # First sighting: take the batch's statistics; afterwards an exponential moving average.
        keep = torch.where(self.prior_seen, self.class_prior_momentum, 0.0).to(mass.dtype)
        keep = torch.where(seen_now, keep, torch.ones_like(keep))
        self.prior_mu.mul_(keep[:, None]).add_((1 - keep)[:, None] * batch_mu.nan_to_num())
        self.prior_variance.mul_(keep).add_((1 - keep) * batch_var.nan_to_num())
        self.prior_seen |= seen_now

    def forward(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        weak_labels: torch.Tensor,
        *,
        image_classes: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
        cls_logits: torch.Tensor | None = None,
        valid_mask: torch.Tensor | None = None,
        use_gmm: bool | None = None,
        coarse_logits: torch.Tensor | None = None,
    ) -> dict:
        """Compute the AGMM++ loss.

        Args:
            features: (B, C, h, w) decoder features (any stride; h, w <= H, W).
            logits: (B, K, H, W) segmentation logits at label resolution.
            weak_labels: (B, H, W) integer class ids, ``ignore_index`` = unlabeled.
            image_classes: (B, K) bool / multi-hot, the classes of each whole image (a crop may
                have lost their labels); used with ``class_prior_momentum``.
            tags: (B, K) multi-hot image tags, for L_cls (with ``cls_logits``).
            cls_logits: (B, K) image-level classification scores.
            valid_mask: (B, H, W) bool, False on padding (excluded from L_self and OEM).
            use_gmm: overrides the constructor's ``use_gmm`` for this call (a warm-up: L_seg only
                for the first steps, see ``LossConfig.gmm_warmup_steps``).
            coarse_logits: (B, K, h, w) optional, the logits on the features' grid of which
                ``logits`` is the bilinear upsampling (``align_corners=False``), as DeepLabV3+ and
                the ViT make them (their ``outputs["coarse_logits"]``). L_self's cell means of the
                logits are then a fixed 3-tap filter of these (exact up to rounding) instead of a
                pooling of the full-resolution maps: the GMM's cost no longer grows with H x W.

        Returns:
            ``loss`` (scalar), ``terms`` (name -> detached scalar, 0 for switched-off terms),
            ``gmm_old`` / ``gmm_new`` (B, K, h, w) detached, ``present`` (B, K) bool, and
            ``self_target`` (B, K, h', w') detached, L_self's target, when L_self uses G.
        """
        # the labeled pixels, found once for L_seg, the E-step and L_weak (and the value check)
        pixels = self._validate(
            features, logits, weak_labels, tags, cls_logits, valid_mask, image_classes
        )
        if coarse_logits is not None:
            _check_coarse_logits(coarse_logits, features, logits)
        gmm_on = self.use_gmm if use_gmm is None else use_gmm
        pooled_logits = rows = None
        if gmm_on and self._pools_coarse(coarse_logits, logits, valid_mask):
            pooled_logits = (coarse_cell_means(coarse_logits, logits.shape[-2:]), None)
        elif gmm_on and self._pools_logits(logits, features, pixels):
            # L_self's pooled logits and L_seg's labeled rows in one op: one full-size backward
            kernel = (logits.shape[2] // features.shape[2], logits.shape[3] // features.shape[3])
            pooled, pooled_weights, rows = pool_and_gather(logits, kernel, pixels, valid_mask)
            pooled_logits = (pooled, pooled_weights)
        if (
            rows is None
            and coarse_logits is not None
            and labels_are_sparse(pixels[0].numel(), logits[:, 0].numel())
        ):
            # L_seg's labeled logits as bilinear samples of the coarse logits (the same values):
            # no gradient reaches the full-resolution logits, whose zero-filled (B, K, H, W)
            # gradient and upsampling backward cost more than the rest of L_seg
            rows = gmm_fn.sample_at_pixels(
                coarse_logits,
                *pixels,
                tuple(logits.shape[-2:]),
                dtype=torch.promote_types(coarse_logits.dtype, torch.float32),
            )
        terms = {}
        terms["seg"] = partial_cross_entropy(
            logits,
            weak_labels,
            ignore_index=self.ignore_index,
            reduction=self.seg_reduction,
            pixels=pixels,
            rows=rows,
        )
        gmm = None
        if gmm_on:
            classes = self._batch_classes(weak_labels, pixels, image_classes)
            gmm_labels = weak_labels if classes is None else _relabel(weak_labels, pixels, classes)
            gmm = self.fit_gmm(
                features,
                gmm_labels,
                valid_mask,
                image_classes=image_classes,
                pixels=pixels,
                num_classes=None if classes is None else classes.shape[-1],
            )
            terms.update(
                self._gmm_terms(gmm, logits, gmm_labels, valid_mask, pixels, classes, pooled_logits)
            )
            if classes is not None:
                gmm = _expand_classes(gmm, classes, self.num_classes)
        if cls_logits is not None and tags is not None:
            terms["cls"] = classification_loss(cls_logits, tags)
        loss = sum(self.lambdas[name] * value for name, value in terms.items())
        # Switched-off terms are 0, attached to the graph through L_seg (DDP needs every term
        # attached; a zero of their own would cost a full-size backward of the logits).
        zero = terms["seg"] * 0.0
        terms = {name: terms.get(name, zero) for name in TERM_NAMES}
        out = {"loss": loss, "terms": {name: value.detach() for name, value in terms.items()}}
        if gmm is not None:
            out.update(
                gmm_old=gmm["gmm_old"].detach(),
                gmm_new=gmm["gmm_new"].detach(),
                present=gmm["present"],
                embeddings=gmm["embeddings"].detach(),
            )
            if "self_target" in gmm:
                out["self_target"] = gmm["self_target"]
        return out

    def _gmm_terms(
        self,
        gmm: dict,
        logits: torch.Tensor,
        weak_labels: torch.Tensor,
        valid_mask: torch.Tensor | None,
        pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        channels: torch.Tensor | None = None,
        pooled_logits: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The GMM's terms; ``channels``: the logits' channels of G's classes, ``(K',)`` or per
        image ``(B, J)`` (None = all K);
        ``pooled_logits``: the logits pooled to G's grid and the cells' valid share, if at hand."""
        present = gmm["present"]
        new: gmm_fn.GMMParams = gmm["new"]
        g_new = gmm["gmm_new"]  # (B, K, h, w) on the feature grid
        terms = {}
        if self.use_self and self.pseudo_labels == "gmm":
            target = g_new.detach() if self.stop_gradient else g_new
            probs, weights = self._probs_on_grid(
                logits, valid_mask, target, channels=channels, pooled_logits=pooled_logits
            )
            if self.self_target in ("gmm_x_p", "gmm_x_p_within"):
                pooled = probs
                if pooled.shape[-2:] != target.shape[-2:]:
                    pooled = self._probs_on_grid(
                        logits, valid_mask, target, resolution="feature", channels=channels
                    )[0]
                sq_dist, sigma = new.sq_dist, new.sigma
                if self.stop_gradient:
                    sq_dist, sigma = sq_dist.detach(), sigma.detach()
                if self._fused_self(probs, target):  # the same maths as below, one node
                    terms["self"], fused_target = gmm_fn.product_target_bce(
                        probs.flatten(2),
                        sq_dist,
                        sigma,
                        present,
                        None if weights is None else weights.flatten(1),
                        within=self.self_target == "gmm_x_p_within",
                    )
                    gmm["self_target"] = fused_target.view_as(target)
                    return self._weak_and_con_terms(gmm, logits, weak_labels, pixels, terms)
                target = gmm_fn.product_target(
                    sq_dist,
                    sigma,
                    present,
                    pooled.detach().flatten(2),
                    within=self.self_target == "gmm_x_p_within",
                ).view_as(target)
            if probs.shape[-2:] != target.shape[-2:]:
                target = F.interpolate(
                    target, size=probs.shape[-2:], mode="bilinear", align_corners=False
                )
            classes = present
            if self.self_classes == "all":  # every class, in images that have any component
                classes = present.any(dim=1, keepdim=True).expand_as(present)
            if self.self_loss == "ce":
                terms["self"] = confident_cross_entropy(
                    probs,
                    target,
                    classes,
                    weights,
                    threshold=self.self_threshold,
                    reduction=self.self_reduction,
                )
            else:
                terms["self"] = self_supervision_loss(
                    probs, target, classes, weights, reduction=self.self_reduction
                )
            gmm["self_target"] = target.detach()  # what L_self taught P (for the Fig. 10 log)
        elif self.use_self:  # Eq. 18 hard labels, cross-entropy on the assigned pixels
            assigned = gmm_fn.assign_labels(
                new.sq_dist.detach(), new.sigma.detach(), present, ignore_index=self.ignore_index
            ).view(-1, 1, *g_new.shape[-2:])
            assigned = F.interpolate(assigned.float(), size=logits.shape[-2:], mode="nearest")
            assigned = assigned.long()[:, 0]
            if channels is not None:  # K' / per-image slot ids -> the logits' class ids
                unassigned = assigned == self.ignore_index
                slots = assigned.masked_fill(unassigned, 0)
                if channels.dim() == 1:
                    ids = channels[slots]
                else:
                    ids = channels.gather(1, slots.flatten(1)).view_as(slots)
                assigned = ids.masked_fill(unassigned, self.ignore_index)
            if valid_mask is not None:
                assigned = assigned.masked_fill(~valid_mask, self.ignore_index)
            terms["self"] = partial_cross_entropy(
                logits, assigned, ignore_index=self.ignore_index, reduction=self.self_reduction
            )
        return self._weak_and_con_terms(gmm, logits, weak_labels, pixels, terms)

    def _fused_self(self, probs: torch.Tensor, target: torch.Tensor) -> bool:
        """Whether L_self (G x P target, BCE) runs as one node, ``gmm_fn.product_target_bce``:
        P on G's grid, the per-pair mean over the present classes."""
        return (
            probs.shape[-2:] == target.shape[-2:]
            and self.self_loss == "bce"
            and self.self_reduction == "pixel"
            and self.self_classes == "present"
        )

    def _weak_and_con_terms(
        self,
        gmm: dict,
        logits: torch.Tensor,
        weak_labels: torch.Tensor,
        pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        terms: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``terms`` with L_weak and L_con added (when on)."""
        present = gmm["present"]
        new: gmm_fn.GMMParams = gmm["new"]
        g_new = gmm["gmm_new"]
        grid, image = tuple(g_new.shape[-2:]), tuple(logits.shape[-2:])
        # d^2 at the labeled positions of L_weak (the pixels' 4 corners) and of L_con, gathered
        # in one op from the position-major rows (one scatter of their gradient)
        corners = con = None
        positions = []
        if self.use_weak and not self.posterior:
            corners = gmm_fn.bilinear_corners(*pixels, grid, image, new.sq_dist.dtype)
            positions.append(corners[0])
        if self.use_con and self.con == "eq14":
            con = contrastive_positions(gmm["label_weights"], present, new.sq_dist.dtype)
            positions.append(con[0])
        if positions:
            sizes = [len(p) for p in positions]
            rows = gmm_fn.position_rows(new.sq_dist)  # (B N, K'): rows of K' contiguous values
            gathered = rows.index_select(0, torch.cat(positions))
            gathered = gathered.split(sizes)
        if corners is not None:
            # G at the labeled pixels only (bilinear samples of the feature grid, exact and
            # O(labels)) and its BCE, as one autograd node
            _, images, weights = corners
            terms["weak"] = gmm_fn.weak_bce_at_corners(
                gathered[0], new.sigma, present, images, weights, weak_labels[pixels].long()
            )
        elif self.use_weak:
            b_idx, y_idx, x_idx = pixels
            g_at_labels = gmm_fn.gmm_at_pixels(
                new,
                b_idx,
                y_idx,
                x_idx,
                grid,
                image,
                posterior=self.posterior,
            )
            labels = weak_labels[b_idx, y_idx, x_idx].long()
            terms["weak"] = weak_loss(g_at_labels, labels, present[b_idx])
        if con is not None:
            terms["con"] = contrastive_at_rows(gathered[-1], *con[1:])
        elif self.use_con:
            terms["con"] = centre_contrastive_loss(
                gmm_fn.centre_distance(new.mu, self.distance), present
            )
        return terms

    def _probs_on_grid(
        self,
        logits: torch.Tensor,
        valid_mask: torch.Tensor | None,
        target: torch.Tensor,
        *,
        resolution: Literal["feature", "label"] | None = None,
        channels: torch.Tensor | None = None,
        pooled_logits: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """P (of the logits' ``channels``, default all) and the valid-pixel weights on the grid
        where L_self is computed.

        ``self_resolution="feature"``: P is area-averaged over each feature cell (padding excluded),
        16x fewer (pixel, class) pairs at stride 4 than at label resolution, for the same signal
        when the segmenter's logits are themselves upsampled from stride 4 (DeepLabV3+); with
        ``self_pooling="logits"`` P is the softmax of the cell's mean logit instead.
        """

        def softmax(x: torch.Tensor, memory_format=torch.preserve_format) -> torch.Tensor:
            """Over all K, then the channels wanted."""
            probs = torch.softmax(x.to(target.dtype, memory_format=memory_format), dim=1)
            return _select_classes(probs, channels)

        weights = None if valid_mask is None else valid_mask.to(target.dtype)
        if (resolution or self.self_resolution) == "label":
            return softmax(logits), weights
        size = tuple(target.shape[-2:])
        if self.self_pooling == "logits":
            # softmax of the cell's mean logit: the full-resolution maps are pooled once, in the
            # logits' own precision, and the softmax runs on the grid (K = 150: 10x cheaper).
            pooled, pooled_weights = pooled_logits or _masked_area_pool(logits, weights, size)
            # in G's layout (a channels_last grid would make every later pass a strided one)
            return softmax(pooled, torch.contiguous_format), pooled_weights
        return _masked_area_pool(softmax(logits), weights, size)

    def _pools_logits(self, logits: torch.Tensor, features: torch.Tensor, pixels) -> bool:
        """Whether L_self pools the logits on an integer grid and L_seg gathers sparse labels."""
        return (
            self.use_self
            and self.pseudo_labels == "gmm"
            and self.self_resolution == "feature"
            and self.self_pooling == "logits"
            and logits.shape[2] % features.shape[2] == 0
            and logits.shape[3] % features.shape[3] == 0
            and labels_are_sparse(pixels[0].numel(), logits[:, 0].numel())
        )

    def _pools_coarse(
        self,
        coarse_logits: torch.Tensor | None,
        logits: torch.Tensor,
        valid_mask: torch.Tensor | None,
    ) -> bool:
        """Whether L_self's cell means come from ``coarse_logits``: cells of whole pixels and no
        padding (a cell's mean over its valid pixels needs the full-resolution logits)."""
        return (
            coarse_logits is not None
            and self.use_self
            and self.pseudo_labels == "gmm"
            and self.self_resolution == "feature"
            and self.self_pooling == "logits"
            and logits.shape[2] % coarse_logits.shape[2] == 0
            and logits.shape[3] % coarse_logits.shape[3] == 0
            and (valid_mask is None or bool(valid_mask.all()))
        )

    def _batch_classes(
        self,
        weak_labels: torch.Tensor,
        pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        image_classes: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The classes the GMM is computed for, when that is not all K (else None).

        A class without a labeled pixel in an image has no component there, and every term of
        the GMM is restricted to the images' components, so the loss is the same when the
        (B, K, N) tensors of the mixture only hold the labeled classes. Returns either ``(K',)``
        the class ids labeled anywhere in the batch, or, when the images share few of them (each
        has at most half of the batch's K'), ``(B, J)``: each image's own labeled classes in
        slots 0..J-1 (its other slots hold distinct classes it has no label of). ADE20K: ~10 of
        K = 150 classes per image, ~66 per batch of 8. Not with ``self_classes="all"`` (which
        needs P of every class) or the class prior (which gives unlabeled classes a component);
        not per image with a class-balanced cross-entropy L_self (which groups by class).
        """
        if self.self_classes == "all" or (
            self.class_prior_momentum > 0 and image_classes is not None
        ):
            return None
        batch = weak_labels.shape[0]
        seen = torch.zeros(batch, self.num_classes, dtype=torch.bool, device=weak_labels.device)
        seen[pixels[0], weak_labels[pixels].long()] = True
        in_batch = seen.any(dim=0)
        used, slots = int(in_batch.sum()), int(seen.sum(dim=1).max())
        if used == 0:  # no label at all
            return None
        per_image_ok = not (self.self_loss == "ce" and self.self_reduction == "class")
        if per_image_ok and 2 * slots <= used:
            # each image's labeled classes first (in class order), then the others
            order = seen.to(torch.uint8).argsort(dim=1, descending=True, stable=True)
            return order[:, :slots]
        if used == self.num_classes:  # nothing to drop
            return None
        return in_batch.nonzero()[:, 0]

    def _validate(
        self, features, logits, weak_labels, tags, cls_logits, valid_mask, image_classes=None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check shapes, dtypes and label values; the error says which argument and what was
        expected. Returns the labeled pixels' ``(b, y, x)`` indices."""
        _check_tensor("features", features, ndim=4, floating=True)
        _check_tensor("logits", logits, ndim=4, floating=True)
        _check_tensor("weak_labels", weak_labels, ndim=3, floating=False)
        batch, channels = features.shape[:2]
        if channels != self.in_channels:
            raise ValueError(
                f"features: expected {self.in_channels} channels (in_channels), got shape {tuple(features.shape)}"
            )
        if logits.shape[:2] != (batch, self.num_classes):
            raise ValueError(
                f"logits: expected shape ({batch}, {self.num_classes}, H, W) "
                f"(batch of features, num_classes), got {tuple(logits.shape)}"
            )
        if weak_labels.shape != (batch, *logits.shape[2:]):
            raise ValueError(
                f"weak_labels: expected shape {(batch, *logits.shape[2:])} (B of features, H, W of "
                f"logits), got {tuple(weak_labels.shape)}"
            )
        if features.shape[2] > logits.shape[2] or features.shape[3] > logits.shape[3]:
            raise ValueError(
                f"features: spatial size {tuple(features.shape[2:])} is larger than the label "
                f"size {tuple(logits.shape[2:])}"
            )
        pixels = (weak_labels != self.ignore_index).nonzero(as_tuple=True)
        value = _bad_label(weak_labels, self.num_classes, self.ignore_index, pixels)
        if value is not None:
            raise ValueError(
                f"weak_labels: value {value} is not a class id in [0, {self.num_classes}) "
                f"nor the unlabeled value {self.ignore_index}"
            )
        for name, tensor in (
            ("tags", tags),
            ("cls_logits", cls_logits),
            ("image_classes", image_classes),
        ):
            if tensor is not None and tuple(tensor.shape) != (batch, self.num_classes):
                raise ValueError(
                    f"{name}: expected shape ({batch}, {self.num_classes}), got {tuple(tensor.shape)}"
                )
        if valid_mask is not None:
            _check_tensor("valid_mask", valid_mask, ndim=3, floating=False)
            if valid_mask.dtype != torch.bool or valid_mask.shape != weak_labels.shape:
                raise ValueError(
                    f"valid_mask: expected a bool tensor of shape {tuple(weak_labels.shape)}, "
                    f"got {valid_mask.dtype} {tuple(valid_mask.shape)}"
                )
        return pixels


def pool_and_gather(
    logits: torch.Tensor,
    kernel: tuple[int, int],
    pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    valid_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Logits area-pooled over ``kernel`` cells (valid pixels only) and the logits at ``pixels``.

    Returns ``(pooled (B, K, h, w), cell valid share (B, h, w) or None, rows (L, K))``: the values
    of ``_masked_area_pool`` and ``logits[b, :, y, x]``, but with one backward that writes the
    full-resolution gradient once (instead of a pooling backward, a zero-filled gather backward
    and their sum: at K = 150 those are ~100 ms of a CPU step).
    """
    # 0 / 1 weights, and the cells' valid shares, in float32 whatever the logits' dtype
    weights = None
    if valid_mask is not None:
        weights = valid_mask.to(torch.promote_types(logits.dtype, torch.float32))
    return _PoolAndGather.apply(logits, weights, kernel, *pixels)


class _PoolAndGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, weights, kernel, b_idx, y_idx, x_idx):
        size = (logits.shape[2] // kernel[0], logits.shape[3] // kernel[1])
        pooled, pooled_weights = _masked_area_pool(logits, weights, size)
        ctx.save_for_backward(weights, pooled_weights, b_idx, y_idx, x_idx)
        ctx.kernel, ctx.pooled_shape = kernel, pooled.shape
        ctx.memory_format = (
            torch.channels_last
            if logits.is_contiguous(memory_format=torch.channels_last)
            and not logits.is_contiguous()
            else torch.contiguous_format
        )
        if pooled_weights is not None:
            ctx.mark_non_differentiable(pooled_weights)
        return pooled, pooled_weights, logits[b_idx, :, y_idx, x_idx]

    @staticmethod
    def backward(ctx, grad_pooled, _grad_shares, grad_rows):
        weights, pooled_weights, b_idx, y_idx, x_idx = ctx.saved_tensors
        kernel_h, kernel_w = ctx.kernel
        if grad_pooled is None:
            grad_pooled = torch.zeros(
                ctx.pooled_shape, dtype=grad_rows.dtype, device=grad_rows.device
            )
        # d pooled / d logit = w / (k * pooled_w) for the logit's own cell
        if weights is None:
            cell_grad = grad_pooled / (kernel_h * kernel_w)
        else:
            cells = pooled_weights[:, None].clamp_min(1e-6).to(grad_pooled.dtype)
            cell_grad = grad_pooled / (cells * (kernel_h * kernel_w))
        # in the logits' memory format (the small grid is converted, not the full-size gradient)
        cell_grad = cell_grad.contiguous(memory_format=ctx.memory_format)
        if _rows_are_faster(cell_grad):
            grad = _upsample_rows(cell_grad, ctx.kernel)
        else:
            grad = F.interpolate(cell_grad, scale_factor=ctx.kernel, mode="nearest")
        if weights is not None:
            grad = grad * weights[:, None].to(grad.dtype)
        if grad_rows is not None:  # added in place through a flat view in memory order
            grad = grad.contiguous(memory_format=ctx.memory_format)  # view(-1) needs it
            _, channels, height, width = grad.shape
            classes = torch.arange(channels, device=grad.device)
            if ctx.memory_format == torch.channels_last:
                flat = grad.permute(0, 2, 3, 1).view(-1)
                pixel = (b_idx * height + y_idx) * width + x_idx
                index = pixel[:, None] * channels + classes  # (L, K)
            else:
                flat = grad.view(-1)
                index = ((b_idx[:, None] * channels + classes) * height + y_idx[:, None]) * width
                index = index + x_idx[:, None]
            flat.index_add_(0, index.flatten(), grad_rows.to(grad.dtype).flatten())
        return grad, None, None, None, None, None


def coarse_cell_means(coarse_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The mean over each cell of ``F.interpolate(coarse_logits, size, mode="bilinear",
    align_corners=False)``, computed on the coarse grid: (B, K, h, w) -> (B, K, h, w), float32
    (or float64 for float64 input).

    Bilinear upsampling by an integer factor k and the cell mean are linear and separable, and a
    cell's k samples all lie within half a cell of its centre, so each axis is the symmetric 3-tap
    filter (a, 1 - 2a, a) with replicated borders (a = 1/8 for every even k). Equal up to
    rounding; neither direction builds a full-resolution tensor. ``size`` must be a multiple of
    the coarse grid.
    """
    cells_h, cells_w = coarse_logits.shape[-2:]
    taps = (_side_tap(cells_h, size[0] // cells_h), _side_tap(cells_w, size[1] // cells_w))
    return _CellMeans.apply(coarse_logits, taps)


class _CellMeans(torch.autograd.Function):
    """The separable 3-tap filter of :func:`coarse_cell_means`; symmetric, so its backward is
    the same filter."""

    @staticmethod
    def forward(ctx, coarse_logits, taps):
        ctx.taps = taps
        ctx.dtype = coarse_logits.dtype
        ctx.memory_format = (
            torch.channels_last
            if coarse_logits.is_contiguous(memory_format=torch.channels_last)
            and not coarse_logits.is_contiguous()
            else torch.contiguous_format
        )
        values = coarse_logits.to(torch.promote_types(coarse_logits.dtype, torch.float32))
        return _filter_cells(values, taps)

    @staticmethod
    def backward(ctx, grad):
        # filtered in the coarse logits' layout (the classifier's backward wants it so): one
        # re-layout of the float32 gradient first costs less than the filter's narrowed adds
        # along a contiguous last axis (CPU, K = 21: 0.24 ms against 0.41 with the re-layout
        # fused into the final cast), and the cast to their dtype is then a plain one
        grad = grad.contiguous(memory_format=ctx.memory_format)
        return _filter_cells(grad, ctx.taps).to(ctx.dtype), None


def _filter_cells(x: torch.Tensor, taps: tuple[float, float]) -> torch.Tensor:
    """The separable filter of :func:`coarse_cell_means` on (B, K, h, w): a new tensor.

    Three forms, the same values up to rounding, picked by what is fastest on this project's
    CPU (docs/training.md "Speed"): contiguous (NCHW) maps as two products with the axes' (h, h)
    and (w, w) band matrices (K = 21 and 150, bf16: -0.45 ms against the narrowed adds, whose
    steps along the contiguous last axis are short); channels_last maps of 32 classes or more as
    one depthwise 3 x 3 convolution of the replicate-padded maps (oneDNN; K = 150: -2.7 ms);
    fewer classes in channels_last as the narrowed adds of :func:`_three_tap`. GPUs take the
    convolution (two kernels instead of ~20; not measured here)."""
    cpu = x.device.type == "cpu"
    if cpu and x.is_contiguous():
        batch, classes, height, width = x.shape
        rows = _band_matrix(height, taps[0], x.dtype, x.device)  # symmetric
        cols = _band_matrix(width, taps[1], x.dtype, x.device)
        filtered = torch.matmul(rows, x.view(batch * classes, height, width))
        return torch.matmul(filtered, cols).view(x.shape)
    if cpu and (x.shape[1] < 32 or not x.is_contiguous(memory_format=torch.channels_last)):
        return _three_tap(_three_tap(x, taps[0], 2), taps[1], 3)
    weight = _tap_kernel(taps, x.shape[1], x.dtype, x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=x.shape[1])


@functools.lru_cache(maxsize=32)
def _band_matrix(cells: int, side: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(cells, cells): the (side, 1 - 2 side, side) filter along one axis with replicated
    borders, as a matrix (symmetric). Read-only (cached)."""
    eye = torch.eye(cells, dtype=torch.float64)
    band = _three_tap(eye, side, 0) if cells > 1 else eye
    return band.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _tap_kernel(
    taps: tuple[float, float], channels: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The (channels, 1, 3, 3) depthwise kernel of the two axes' (side, 1 - 2 side, side) taps.
    Read-only (cached)."""
    rows = [torch.tensor([side, 1.0 - 2.0 * side, side], dtype=torch.float64) for side in taps]
    kernel = rows[0][:, None] * rows[1][None, :]
    return kernel.to(dtype=dtype, device=device).expand(channels, 1, 3, 3).contiguous()


def _three_tap(x: torch.Tensor, side: float, dim: int) -> torch.Tensor:
    """(side, 1 - 2 side, side) along ``dim``, the border value repeated; a new tensor."""
    length = x.shape[dim]
    if side == 0.0 or length == 1:  # a single cell is its own neighbour on both sides
        return x.clone()
    out = x * (1.0 - 2.0 * side)
    for lo, hi in ((1, 0), (0, 1)):  # from the previous cell, from the next one
        out.narrow(dim, lo, length - 1).add_(x.narrow(dim, hi, length - 1), alpha=side)
    # the replicated border counts each edge cell twice: both edges in one strided view (3 ops
    # where one narrowed add per edge took 6; K = 21 bf16: -0.1 ms channels_last, -0.24 NCHW)
    edges = (slice(None),) * dim + (slice(None, None, length - 1),)
    out[edges].add_(x[edges], alpha=side)
    return out


@functools.lru_cache(maxsize=64)
def _side_tap(cells: int, kernel: int) -> float:
    """The weight of each neighbour cell in the mean of a cell of a 1-D linear upsampling by
    ``kernel`` (align_corners=False), read off PyTorch's own interpolation."""
    if cells < 2:
        return 0.0
    eye = torch.eye(2, dtype=torch.float64).unsqueeze(0)  # two cells as channels
    upsampled = F.interpolate(eye, size=2 * kernel, mode="linear", align_corners=False)
    return float(upsampled[0, 1, :kernel].mean())  # cell 1's share in cell 0's mean


def _relabel(weak_labels: torch.Tensor, pixels, classes: torch.Tensor) -> torch.Tensor:
    """Weak labels with the class ids of ``classes`` replaced by their positions in it: ``(K',)``
    for the whole batch, or ``(B, J)`` for each image (see ``AGMMLoss._batch_classes``)."""
    labels = weak_labels[pixels].long()
    size = int(classes.max()) + 1
    positions = torch.arange(classes.shape[-1], dtype=weak_labels.dtype, device=classes.device)
    relabeled = weak_labels.clone()
    if classes.dim() == 1:
        remap = torch.zeros(size, dtype=weak_labels.dtype, device=classes.device)
        remap[classes] = positions
        relabeled[pixels] = remap[labels]
    else:  # per image: (B, size) slot of each class id
        remap = torch.zeros(len(classes), size, dtype=weak_labels.dtype, device=classes.device)
        remap.scatter_(1, classes, positions.expand_as(classes))
        relabeled[pixels] = remap[pixels[0], labels]
    return relabeled


def _select_classes(values: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
    """(B, K, ...) -> the channels of ``classes``: (B, K', ...) for ``(K',)`` ids, (B, J, ...)
    for per-image ``(B, J)`` ids; ``values`` itself for None."""
    if classes is None:
        return values
    if classes.dim() == 1:
        return values.index_select(1, classes)
    return values.gather(1, _per_image_index(classes, values.shape))


def _per_image_index(classes: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Per-image ``(B, J)`` class ids as a ``gather`` / ``scatter_`` index over the class axis of
    maps whose other dimensions are ``shape[2:]`` (an expanded view, no copy)."""
    index = classes.view(*classes.shape, *[1] * (len(shape) - 2))
    return index.expand(-1, -1, *shape[2:])


@torch.no_grad()
def _expand_classes(gmm: dict, classes: torch.Tensor, num_classes: int) -> dict:
    """``fit_gmm``'s per-class maps for the K' ``classes`` as maps of all K classes (0 elsewhere).

    For ``forward``'s outputs, which are detached: no graph. A map held under two keys (G_old is
    G_new without OEM) is expanded once (at K = 150 each expansion writes a (B, 150, h, w) map).
    """
    expanded = {}

    def expand(values: torch.Tensor) -> torch.Tensor:  # (B, K', ...) -> (B, K, ...)
        if id(values) not in expanded:
            full = values.new_zeros(values.shape[0], num_classes, *values.shape[2:])
            if classes.dim() == 1:
                full.index_copy_(1, classes, values)
            else:  # per image; an image's slots hold distinct classes
                full.scatter_(1, _per_image_index(classes, values.shape), values)
            expanded[id(values)] = full
        return expanded[id(values)]

    out = dict(gmm)
    for key in ("gmm_old", "gmm_new", "present", "labeled", "self_target"):
        if key in gmm:
            out[key] = expand(gmm[key])
    return out


def _masked_area_pool(
    x: torch.Tensor, weights: torch.Tensor | None, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weighted mean of (B, C, H, W) over each cell of the h x w grid, and each cell's mean weight.

    ``weights``: (B, H, W) in [0, 1] (0 on padding) or None (all 1; the cell weights are None).
    """
    if weights is None:
        return _area_pool(x, size), None
    pooled_weights = _area_pool(weights[:, None], size)  # (B, 1, h, w)
    pooled = _area_pool(x * weights[:, None].to(x.dtype), size)
    return pooled / pooled_weights.clamp_min(1e-6).to(pooled.dtype), pooled_weights[:, 0]


def _area_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean of (B, C, H, W) over each cell of an h x w grid (adaptive average pooling).

    When h, w divide H, W it is a plain average pool, whose backward is ~2x faster on CPUs; an
    NCHW tensor on a CPU takes :func:`_pool_rows` instead.
    """
    height, width = x.shape[-2:]
    if height % size[0] == 0 and width % size[1] == 0:
        kernel = (height // size[0], width // size[1])
        if _rows_are_faster(x):
            return _pool_rows(x, kernel)
        return F.avg_pool2d(x, kernel)
    return F.adaptive_avg_pool2d(x, size)


def _rows_are_faster(x: torch.Tensor) -> bool:
    """Whether the row-sum / matrix-product forms of cell pooling and its upsampling beat
    ``avg_pool2d`` / nearest ``interpolate``: NCHW (not channels_last) tensors on a CPU, where
    those kernels are 1.2-2.5x slower (docs/training.md "Speed"). channels_last ones and GPUs keep
    the stock kernels."""
    return x.device.type == "cpu" and x.is_contiguous() and x.shape[1] > 1


def _cell_matrix(cells: int, kernel: int, like: torch.Tensor, value: float) -> torch.Tensor:
    """(cells * kernel, cells): ``value`` where a column index falls into a cell, 0 elsewhere."""
    matrix = like.new_zeros(cells * kernel, cells)
    columns = torch.arange(cells * kernel, device=like.device)
    matrix[columns, torch.div(columns, kernel, rounding_mode="floor")] = value
    return matrix


def _pool_rows(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """``avg_pool2d(x, kernel)`` of a contiguous (B, C, H, W) tensor as a matrix product over the
    columns and a sum of each cell's ``kernel[0]`` rows (equal up to rounding).

    In float32 the rows are summed first (the product then runs on a quarter of the data); in
    bf16 / fp16 the product comes first, where AMX makes it cheaper than the strided sum. A
    non-finite value spreads along its row of cells (0 x inf), where the loss is non-finite anyway.
    """
    batch, channels, height, width = x.shape
    cells_h, cells_w = height // kernel[0], width // kernel[1]
    matrix = _cell_matrix(cells_w, kernel[1], x, 1.0 / (kernel[0] * kernel[1]))
    with torch.autocast(x.device.type, enabled=False):  # x's own precision, as avg_pool2d's
        if x.element_size() < 4:
            columns = x.view(-1, width) @ matrix  # (B C H, w)
            pooled = columns.view(-1, kernel[0], cells_w).sum(dim=1)
        else:
            pooled = x.view(-1, kernel[0], width).sum(dim=1) @ matrix  # (B C h, W) -> (B C h, w)
    return pooled.view(batch, channels, cells_h, cells_w)


def _upsample_rows(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling of a contiguous (B, C, h, w) tensor by ``kernel`` (exact): a 0 / 1
    matrix product spreads each cell over its columns, then each row is repeated."""
    batch, channels, cells_h, cells_w = x.shape
    spread = _cell_matrix(cells_w, kernel[1], x, 1.0).t()  # (w, W)
    with torch.autocast(x.device.type, enabled=False):  # x's own precision
        rows = x.reshape(batch * channels * cells_h, cells_w) @ spread  # (B C h, W)
    width = cells_w * kernel[1]
    rows = rows.view(-1, 1, width).expand(-1, kernel[0], width)
    return rows.reshape(batch, channels, cells_h * kernel[0], width)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _bad_label(
    weak_labels: torch.Tensor, num_classes: int, ignore_index: int, pixels=None
) -> int | None:
    """The smallest value of ``weak_labels`` that is neither a class id nor ``ignore_index``, or
    None. ``pixels``: the labeled pixels' indices (``(weak_labels != ignore_index).nonzero(
    as_tuple=True)``), if at hand: only their values are checked, a few hundred with clicks
    instead of the whole (B, H, W) map."""
    if pixels is None:
        pixels = (weak_labels != ignore_index).nonzero(as_tuple=True)
    values = weak_labels[pixels]
    if values.numel() == 0:
        return None
    low, high = (int(v) for v in torch.aminmax(values))
    if low >= 0 and high < num_classes:
        return None
    return int(values[(values < 0) | (values >= num_classes)].min())


def _check_coarse_logits(
    coarse_logits: torch.Tensor, features: torch.Tensor, logits: torch.Tensor
) -> None:
    _check_tensor("coarse_logits", coarse_logits, ndim=4, floating=True)
    expected = (*logits.shape[:2], *features.shape[2:])
    if tuple(coarse_logits.shape) != expected:
        raise ValueError(
            f"coarse_logits: expected shape {expected} (batch and classes of logits, the "
            f"features' grid), got {tuple(coarse_logits.shape)}"
        )


def _check_tensor(name: str, tensor, *, ndim: int, floating: bool) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if floating and not tensor.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")
    if not floating and tensor.is_floating_point():
        raise ValueError(f"{name}: expected an integer tensor, got {tensor.dtype}")
