"""Weak labels: simulate them from dense masks, read the files the community ships, write them.

- ``simulate``: ``simulate_weak_label(mask, kind, rng=..., num_classes=...)`` for points,
  scribbles, blocks, boxes, tags and full masks; ``image_rng(seed, name)`` per image.
- ``readers``: label PNGs (VOC/TEL/AGMM, Cityscapes labelIds, ADE20K blocks), "What's the point"
  clicks, ScribbleSup XML, VOC/COCO boxes, image tags.
- ``scribbles4all``: the Scribbles4All releases (``read_s4_scribble``, ``convert_scribbles4all``).
- ``make_labels``: ``agmm make-labels`` (its ``make_labels()`` for a notebook).
- ``protocols``: named presets of the papers' settings.
- ``sources``: where a dataset's weak labels come from (files, simulated, native boxes, tag
  tables, the dense mask), one source per supervision kind (``choose_sources``).
"""

# ``make_labels`` (the `agmm make-labels` command, built on the datasets) is not imported here:
# the datasets import this package. ``from agmm.data.weak_labels.make_labels import make_labels``.
from agmm.data.weak_labels.protocols import PROTOCOLS, get_protocol
from agmm.data.weak_labels.readers import (
    LABEL_PNG_CONVENTIONS,
    coco_category_map,
    read_boxes_json,
    read_coco_boxes,
    read_label_png,
    read_scribblesup_xml,
    read_tags_json,
    read_tags_list,
    read_tags_npy,
    read_voc_boxes,
    read_whats_the_point_json,
    tags_from_label,
)
from agmm.data.weak_labels.scribbles4all import (
    S4_RELEASES,
    convert_scribbles4all,
    find_s4_scribbles,
    read_s4_scribble,
)
from agmm.data.weak_labels.simulate import (
    DEFAULT_PARAMS,
    KINDS,
    image_rng,
    simulate_weak_label,
)
from agmm.runtime.constants import CITYSCAPES_LABELID_TO_TRAINID, VOC_CLASSES

__all__ = [
    "CITYSCAPES_LABELID_TO_TRAINID",
    "DEFAULT_PARAMS",
    "KINDS",
    "LABEL_PNG_CONVENTIONS",
    "PROTOCOLS",
    "S4_RELEASES",
    "VOC_CLASSES",
    "coco_category_map",
    "convert_scribbles4all",
    "find_s4_scribbles",
    "get_protocol",
    "image_rng",
    "read_boxes_json",
    "read_coco_boxes",
    "read_s4_scribble",
    "read_label_png",
    "read_scribblesup_xml",
    "read_tags_json",
    "read_tags_list",
    "read_tags_npy",
    "read_voc_boxes",
    "read_whats_the_point_json",
    "simulate_weak_label",
    "tags_from_label",
]
