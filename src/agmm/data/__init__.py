"""Data: datasets, weak labels, augmentation and batching.

``build_dataset(name, root=..., split=...)`` returns a torch Dataset whose items are the sample
dict of docs/ARCHITECTURE.md; ``collate_batch`` batches them; ``transforms`` augments them.
"""

from agmm.data.collate import collate_batch
from agmm.data.datasets import DATASETS, SUPERVISIONS, SegmentationDataset, build_dataset
from agmm.data.synthetic import SyntheticShapes
from agmm.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SUPERVISIONS",
    "EvalTransform",
    "SegmentationDataset",
    "SyntheticShapes",
    "TrainTransform",
    "build_dataset",
    "collate_batch",
]
