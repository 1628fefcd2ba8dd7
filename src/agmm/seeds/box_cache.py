"""Box seeds for a whole dataset: computed once, in parallel, cached on disk.

A cache entry is ``<cache_dir>/<name>-<key>.png`` where ``key`` hashes the image file's bytes, the
image's boxes and every parameter of the seed computation, so a changed image, box file or
parameter recomputes. An entry that cannot be read, has the wrong size or holds values that are not
class ids / 255 is recomputed, never trusted. Entries are written to a temporary file and renamed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from agmm.config import Config
from agmm.data import build_dataset
from agmm.data.transforms import denormalize_image
from agmm.errors import DataError
from agmm.seeds.boxes import IGNORE_INDEX, grabcut_seeds
from agmm.seeds.quality import SeedQuality

_logger = logging.getLogger(__name__)
CACHE_VERSION = 1
_KEY_LENGTH = 20


@dataclass
class BoxSeedRun:
    """What :func:`compute_box_seeds` did. ``paths``: image name -> seed PNG (in ``out_dir`` if
    given, else in the cache)."""

    paths: dict[str, Path] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    recomputed_corrupt: int = 0
    no_boxes: list[str] = field(default_factory=list)
    quality: SeedQuality | None = None


def cache_key(image_bytes: bytes, boxes: np.ndarray, params: dict) -> str:
    """Hex digest over the image file bytes, the boxes (M, 5) and the parameters."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image_bytes).digest())
    digest.update(np.ascontiguousarray(boxes, dtype=np.float64).tobytes())
    digest.update(json.dumps({**params, "version": CACHE_VERSION}, sort_keys=True).encode())
    return digest.hexdigest()[:_KEY_LENGTH]


def _safe_name(name: str) -> str:
    return name.replace("/", "__").replace("\\", "__")


def read_cached_seeds(
    path: Path, *, image_size: tuple[int, int], num_classes: int
) -> np.ndarray | None:
    """The cached (H, W) uint8 seeds at ``path``, or None when missing or not trustworthy."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            image.load()
            seeds = np.asarray(image)
    except Exception:  # any unreadable file is simply recomputed
        return None
    if seeds.dtype != np.uint8 or seeds.shape != tuple(image_size):
        return None
    values = np.unique(seeds)
    if ((values >= num_classes) & (values != IGNORE_INDEX)).any():
        return None
    return seeds


def _write_png(path: Path, seeds: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(seeds).save(temporary, format="PNG")
    os.replace(temporary, path)


class _SeedJobs(Dataset):
    """Item ``i`` = the seeds of image ``i`` (computed or read from the cache), so that torch's
    DataLoader runs the jobs in (spawned) worker processes."""

    def __init__(self, dataset, cache_dir: Path, params: dict) -> None:
        self.dataset, self.cache_dir, self.params = dataset, cache_dir, params

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return _seed_one(self.dataset, self.cache_dir, self.params, index)


def _one_opencv_thread(worker_id: int) -> None:
    cv2.setNumThreads(1)  # torch already runs one intra-op thread per DataLoader worker


def _identity(item):
    return item


def _raw_image(dataset, index: int, sample: dict) -> np.ndarray:
    """(H, W, 3) uint8 of an image that has no file: the dataset's raw read, else the sample's."""
    if hasattr(dataset, "read_raw"):
        return np.ascontiguousarray(dataset.read_raw(index)["image"], dtype=np.uint8)

    return denormalize_image(sample["image"])


def _seed_one(dataset, cache_dir: Path, params: dict, index: int) -> dict:
    """Seeds of image ``index``: from the cache when valid, else computed and cached."""
    sample = dataset[index]
    name, image_path = str(sample["name"]), Path(sample["image_path"])
    boxes = np.asarray(sample["boxes"], dtype=np.float64).reshape(-1, 5)
    height, width = (int(v) for v in sample["image"].shape[-2:])
    image = None
    if image_path.is_file():
        try:
            image_bytes = image_path.read_bytes()
        except OSError as error:
            raise DataError(f"{image_path}: cannot read image ({error})") from error
    else:  # generated images (the synthetic dataset): hash the pixels instead of a file
        image = _raw_image(dataset, index, sample)
        image_bytes = np.asarray(image.shape).tobytes() + image.tobytes()
    key = cache_key(image_bytes, boxes, params)
    path = cache_dir / f"{_safe_name(name)}-{key}.png"
    num_classes = params["num_classes"]
    seeds = read_cached_seeds(path, image_size=(height, width), num_classes=num_classes)
    status = "reused"
    if seeds is None:
        status = "corrupt" if path.exists() else "computed"
        if image is None:
            image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise DataError(f"{image_path}: cannot decode image")
            image = np.ascontiguousarray(image[..., ::-1])  # BGR -> RGB
        if image.shape[:2] != (height, width):
            raise DataError(
                f"{image_path}: image is {image.shape[1]}x{image.shape[0]} on disk but the dataset "
                f"gives {width}x{height}; box seeds need the dataset built without resizing"
            )
        seeds = grabcut_seeds(
            image,
            boxes,
            has_background=params["has_background"],
            num_classes=num_classes,
            iterations=params["iterations"],
            method=params["method"],
            shrink_margin=params["shrink_margin"],
            context=params["context"],
            min_foreground=params["min_foreground"],
            max_pixels=params["max_pixels"],
            source=f"boxes of {image_path}",
        )
        pattern = glob.escape(str(cache_dir / _safe_name(name))) + "-" + "?" * _KEY_LENGTH + ".png"
        for stale in glob.glob(pattern):  # entries of an older box file or parameter set
            Path(stale).unlink(missing_ok=True)
        _write_png(path, seeds)
    quality = None
    mask = sample.get("mask")
    if mask is not None:
        mask = np.asarray(mask)
        if (mask != IGNORE_INDEX).any():
            quality = SeedQuality(num_classes)
            quality.update(seeds, mask)
    return {"name": name, "path": path, "status": status, "boxes": len(boxes), "quality": quality}


def compute_box_seeds(
    dataset,
    cache_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    workers: int = 1,
    method: str = "grabcut",
    iterations: int = 5,
    shrink_margin: float = 0.15,
    context: float | None = 1.0,
    min_foreground: float = 0.1,
    max_pixels: int | None = 40_000,
    progress: bool = True,
) -> BoxSeedRun:
    """Box seeds of every image of ``dataset``, cached in ``cache_dir``.

    ``dataset`` is an ``agmm`` dataset (samples with ``boxes`` (M, 5), ``image_path``, ``name``,
    ``image`` of the original size, optionally ``mask``) with ``num_classes`` and
    ``has_background``. ``workers`` > 1 runs that many processes. With ``out_dir``, the seeds are
    also copied to ``out_dir/<name>.png`` (a ``weak_label_dir`` for training). When the dataset
    has dense masks, ``run.quality`` holds the seeds' precision and coverage.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = {
        "method": method,
        "iterations": int(iterations),
        "shrink_margin": float(shrink_margin),
        "context": None if context is None else float(context),
        "min_foreground": float(min_foreground),
        "max_pixels": None if max_pixels is None else int(max_pixels),
        "has_background": bool(dataset.has_background),
        "num_classes": int(dataset.num_classes),
    }
    run = BoxSeedRun(quality=SeedQuality(params["num_classes"]))
    loader = DataLoader(
        _SeedJobs(dataset, cache_dir, params),
        batch_size=None,
        shuffle=False,
        num_workers=workers if workers > 1 else 0,
        collate_fn=_identity,
        worker_init_fn=_one_opencv_thread,
        # Fresh interpreters, not forks: a fork inherits OpenCV's and torch's thread pools in
        # whatever locked state they were (GrabCut in the parent had started them), and the
        # children could hang on them.
        multiprocessing_context="spawn" if workers > 1 else None,
    )
    results = iter(loader)  # workers start here, before tqdm's monitor thread exists
    bar = tqdm(total=len(dataset), desc="box seeds", unit="img", disable=not progress)
    try:
        for result in results:
            name, path = result["name"], result["path"]
            if out_dir is not None:
                target = Path(out_dir) / f"{name}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                path = target
            run.paths[name] = path
            status = result["status"]
            run.reused += status == "reused"
            run.computed += status != "reused"
            run.recomputed_corrupt += status == "corrupt"
            if result["boxes"] == 0:
                run.no_boxes.append(name)
            if result["quality"] is not None:
                run.quality.merge(result["quality"])
            bar.update()
    finally:
        bar.close()
        del results  # stops the workers
    if run.recomputed_corrupt:
        _logger.warning(
            "%d corrupt cache entries in %s were recomputed", run.recomputed_corrupt, cache_dir
        )
    if not run.quality.has_data:
        run.quality = None
    return run


def write_box_seed_folder(cfg: Config, out_dir: str | Path) -> None:
    """The weak labels of a box-supervised run that has no seed files: the GrabCut seeds of its
    training split (computed once, cached in ``data.box_seed_cache``) as PNGs in ``out_dir``,
    each with a JSON sidecar ``{"boxes": [[x0, y0, x1, y1, class], ...]}`` of the image's boxes."""
    out_dir = Path(out_dir)
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
    compute_box_seeds(dataset, cache, out_dir=out_dir, **options)
    # The boxes themselves stay available to the training set, as JSON sidecars of the PNGs.
    for index in range(len(dataset)):
        sample = dataset[index]
        boxes = np.asarray(sample["boxes"], dtype=float).reshape(-1, 5).tolist()
        (out_dir / f"{sample['name']}.json").write_text(json.dumps({"boxes": boxes}))
