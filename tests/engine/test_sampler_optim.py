"""Data order that resumes exactly; optimiser groups and the poly schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agmm.config import TrainConfig
from agmm.engine.optim import build_optimizer, build_scheduler, poly_factor
from agmm.engine.sampler import ResumableSampler, SeededDataset


def test_skipping_the_consumed_samples_gives_the_rest_of_the_epoch():
    data = list(range(10))
    sampler = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    sampler.set_epoch(3)
    assert [i for _, i in sampler] != [i for _, i in full]


def test_ranks_get_disjoint_shards():
    data = list(range(8))
    shards = []
    for rank in range(2):
        sampler = ResumableSampler(data, num_replicas=2, rank=rank, seed=0)
        sampler.set_epoch(0)
        shards.append({i for _, i in sampler})
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(8))


class RandomItems:
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.rand(1).item()


def test_augmentation_randomness_depends_only_on_seed_epoch_and_index():
    dataset = SeededDataset(RandomItems(), seed=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = dataset[(0, 1)]
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is untouched
    torch.manual_seed(999)
    assert dataset[(0, 1)] == first
    assert dataset[(1, 1)] != first and dataset[(0, 2)] != first


class TwoPartModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)

    def parameter_groups(self, *, head_lr_mult=10.0):
        return [
            {"params": list(self.backbone.parameters()), "lr_mult": 1.0},
            {"params": list(self.head.parameters()), "lr_mult": head_lr_mult},
        ]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_new_layers_and_the_gmm_squeeze_conv_get_the_head_lr(optimizer):
    cfg = TrainConfig(optimizer=optimizer, lr=1e-3, head_lr_mult=10.0, steps=100)
    squeeze = nn.Conv2d(2, 2, 1)
    opt = build_optimizer(TwoPartModel(), squeeze, cfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-2, 1e-2])
    assert opt.param_groups[2]["params"][0] is squeeze.weight
    scheduler = build_scheduler(opt, cfg)
    for _ in range(50):
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**0.9)


def test_poly_schedule_with_warmup():
    assert poly_factor(0, total_steps=10, power=0.9) == 1.0
    assert poly_factor(10, total_steps=10, power=0.9) == 0.0
    assert poly_factor(0, total_steps=10, power=0.9, warmup_steps=4) == 0.25
