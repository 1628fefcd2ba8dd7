"""The only torch.distributed code: process-group set-up from torchrun's variables and a few helpers.

A plain ``python -m agmm train`` run is a world of one process and takes the same code path: every
helper below works (and does nothing costly) when no process group exists. Every sum over
processes (training losses, confusion matrices, image counts) goes through :func:`all_reduce_sum`.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def init_distributed(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK) and pick the device.

    ``device``: ``"auto"`` = this process's GPU (``cuda:LOCAL_RANK``) if CUDA exists, else CPU; or an
    explicit ``"cpu"``, ``"cuda"``, ``"cuda:N"``. NCCL on GPUs, gloo on CPU.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}"
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(minutes=30),
            device_id=torch_device if torch_device.type == "cuda" else None,
        )
    return torch_device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that logs, writes checkpoints and shows the progress bar."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place (identity in a single process); returns it.

    NCCL reduces CUDA tensors only: a CPU tensor (e.g. metric counts kept on the CPU) is summed
    through a copy on this process's GPU and written back.
    """
    if not is_distributed():
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.cuda()
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        tensor.copy_(on_gpu)
    else:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_over_ranks(count: int) -> int:
    """``count`` summed over the processes (itself in a single process)."""
    if not is_distributed():
        return count
    return int(all_reduce_sum(torch.tensor([count], dtype=torch.int64)).item())


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(tensor).div_(world_size())


def max_difference_across_ranks(values: torch.Tensor) -> float:
    """Largest |difference| between the processes' copies of ``values`` (0.0 in a single process)."""
    if not is_distributed():
        return 0.0
    high, low = values.clone(), values.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max())


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy process ``src``'s buffers (e.g. BatchNorm running statistics) to every process.

    DDP does this at the start of each forward; after the last step each rank still holds the
    statistics of its own last batch, which would make sharded validation inconsistent.
    """
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


def broadcast_object(obj, src: int = 0):
    """``obj`` of process ``src`` on every process."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none exists)."""
    if is_distributed():
        dist.destroy_process_group()
