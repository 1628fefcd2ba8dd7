"""Seeds for the GMM from the cheapest labels: image tags (online CAMs) and boxes (GrabCut).

See docs/seeds.md.
"""

from agmm.seeds.box_cache import BoxSeedRun, compute_box_seeds
from agmm.seeds.boxes import grabcut_seeds, validate_boxes
from agmm.seeds.cam import cam_loss, cam_seeds, normalise_cams, threshold_cams
from agmm.seeds.cam_export import CamSeedRun, compute_cam_seeds
from agmm.seeds.quality import SeedQuality, seed_quality

__all__ = [
    "BoxSeedRun",
    "CamSeedRun",
    "SeedQuality",
    "cam_loss",
    "cam_seeds",
    "compute_box_seeds",
    "compute_cam_seeds",
    "grabcut_seeds",
    "normalise_cams",
    "seed_quality",
    "threshold_cams",
    "validate_boxes",
]
