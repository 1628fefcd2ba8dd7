"""Two gloo processes, each with half the data, give the single-process numbers."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from stand_ins import PointwiseSegmenter, TinyDataset

from agmm.eval.inference import evaluate
from agmm.eval.metrics import ConfusionMatrix


def random_predictions(seed=0, num_classes=5):
    """pred, target (6, 9, 7) with ignore pixels; class 3 absent from both (NaN IoU)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (6, 9, 7), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    target[target == 3] = 255
    pred = torch.randint(0, num_classes, (6, 9, 7), generator=g)
    pred[pred == 3] = 0
    return pred, target


def _worker(rank, world_size, port, result_path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        pred, target = random_predictions()
        confusion = ConfusionMatrix(5)
        confusion.update(pred[rank::world_size], target[rank::world_size])
        confusion.all_reduce()
        model = PointwiseSegmenter().eval()
        # 5 images: the shards are uneven (3 + 2), nothing may be counted twice
        result = evaluate(
            model, TinyDataset(model, num_images=5, noise=0.3), batch_size=2, progress=False
        )
        if rank == 0:
            torch.save(
                {"matrix": confusion.matrix, "miou": confusion.miou(), "eval": result}, result_path
            )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_result(tmp_path_factory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path_factory.mktemp("ddp") / "result.pt"
    mp.spawn(_worker, args=(2, port, str(path)), nprocs=2, join=True)
    return torch.load(path, weights_only=False)


def test_all_reduced_confusion_matrix_equals_the_single_process_one(distributed_result):
    pred, target = random_predictions()
    single = ConfusionMatrix(5)
    single.update(pred, target)
    assert torch.equal(distributed_result["matrix"], single.matrix)
    assert distributed_result["miou"] == pytest.approx(single.miou())
    assert math.isnan(single.per_class_iou()[3])


def test_distributed_evaluate_equals_the_single_process_one(distributed_result):
    model = PointwiseSegmenter().eval()
    single = evaluate(model, TinyDataset(model, num_images=5, noise=0.3), progress=False)
    distributed = distributed_result["eval"]
    assert (distributed["confusion"] == single["confusion"]).all()
    assert distributed["miou"] == pytest.approx(single["miou"])
    assert distributed["num_images"] == 5
