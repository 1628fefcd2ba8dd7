"""Values that several layers share; each is defined here and nowhere else."""

from __future__ import annotations

# The ignore / unlabeled value of every label inside the library (masks, weak labels, seeds,
# predictions without a class). Readers convert other conventions at the boundary.
IGNORE_INDEX = 255

# What the pipeline normalises images by (and the timm backbones were trained with).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PASCAL VOC class names in id order (0 = background); "What's the point" numbers the 20 object
# classes 1..20 in this same (alphabetical) order.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

# Cityscapes labelIds (0..33, as in gtFine_labelIds.png and the N-click files) -> the 19 trainIds;
# every other labelId (unlabeled, ego vehicle, ..., license plate) -> IGNORE_INDEX. From
# cityscapesScripts' helpers/labels.py.
_CITYSCAPES_TRAIN_LABEL_IDS = (
    7,
    8,
    11,
    12,
    13,
    17,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
    31,
    32,
    33,
)
CITYSCAPES_LABELID_TO_TRAINID: dict[int, int] = {
    label_id: (
        _CITYSCAPES_TRAIN_LABEL_IDS.index(label_id)
        if label_id in _CITYSCAPES_TRAIN_LABEL_IDS
        else IGNORE_INDEX
    )
    for label_id in range(34)
}
