"""Dense CRF post-processing (Krähenbühl & Koltun 2011) with pydensecrf2, as in DeepLab.

The defaults are DeepLab-v2's PASCAL VOC setting (Chen et al., TPAMI 2017, the paper's ref. [3]):
10 mean-field iterations, a Gaussian smoothness kernel of weight 3 and spatial std 1 px, and a
bilateral appearance kernel of weight 4, spatial std 67 px and colour std 3. Tune ``bi_xy`` with
the image size (larger images, larger spatial std).
"""

from __future__ import annotations

import numpy as np

CRF_DEFAULTS = {
    "iterations": 10,
    "pos_w": 3.0,
    "pos_xy": 1.0,
    "bi_w": 4.0,
    "bi_xy": 67.0,
    "bi_rgb": 3.0,
}


def crf_refine(
    image: np.ndarray,
    probs: np.ndarray,
    *,
    iterations: int = 10,
    pos_w: float = 3.0,
    pos_xy: float = 1.0,
    bi_w: float = 4.0,
    bi_xy: float = 67.0,
    bi_rgb: float = 3.0,
) -> np.ndarray:
    """Refines class probabilities with a fully connected CRF.

    image: (H, W, 3) uint8 RGB; probs: (K, H, W) softmax probabilities (each pixel sums to 1).
    Returns the CRF marginals (K, H, W) float32; ``argmax(0)`` is the refined label map.
    Unary = −log(probs); pairwise = ``pos_w``·Gaussian(``pos_xy``) + ``bi_w``·bilateral(``bi_xy``,
    ``bi_rgb``) Potts terms.
    """
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as error:  # optional dependency: pip install agmm[crf]
        raise ImportError("dense CRF needs pydensecrf2: pip install 'agmm[crf]'") from error

    probs = np.asarray(probs, dtype=np.float32)
    image = np.asarray(image)
    if probs.ndim != 3 or image.shape != (*probs.shape[1:], 3) or image.dtype != np.uint8:
        raise ValueError(
            f"crf_refine needs image (H, W, 3) uint8 and probs (K, H, W); got image "
            f"{image.shape} {image.dtype} and probs {probs.shape}"
        )
    num_classes, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    unary = -np.log(np.clip(probs, 1e-8, 1.0)).reshape(num_classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=pos_xy, compat=pos_w)
    crf.addPairwiseBilateral(sxy=bi_xy, srgb=bi_rgb, rgbim=np.ascontiguousarray(image), compat=bi_w)
    marginals = crf.inference(int(iterations))
    return np.asarray(marginals, dtype=np.float32).reshape(num_classes, height, width)
