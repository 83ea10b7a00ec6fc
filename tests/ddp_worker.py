"""Trains with the regularizer under DistributedDataParallel (gloo, 2 processes on loopback).

Usage: ``python -m tests.ddp_worker OUT_DIR``; the ranks meet through a file in OUT_DIR (no port to
race for) and talk over loopback; each rank writes its final parameters to
``OUT_DIR/rank<r>.pt``. ``setup`` and ``train`` are shared with the single-process run in
test_reliability.py.

Teardown is ordered so that it cannot race: the results are written first, then both ranks pass
a barrier (no collective is in flight any more), tear down the process group, and leave with
``os._exit``, skipping interpreter shutdown, where gloo's threads were destroyed while still
running ("terminate called without an active exception", SIGABRT, in about 1 run in 5 with our
regularizer and 1 in 30 with the pure-PyTorch reference).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from jacobian import JacobianReg
from torch.nn.parallel import DistributedDataParallel

STEPS = 5
BATCH = 8  # per process


def setup() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The model and the whole batch, identical in every process and in the test."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 4)
    ).double()
    x = torch.randn(2 * BATCH, 6, dtype=torch.float64)
    target = torch.randint(0, 4, (2 * BATCH,))
    return model, x, target


def train(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> None:
    """SGD steps on cross-entropy plus 0.1 times the exact Jacobian regularizer."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reg = JacobianReg(n=-1)
    for _ in range(STEPS):
        data = x.clone().requires_grad_(True)
        optimizer.zero_grad()
        output = model(data)
        loss = torch.nn.functional.cross_entropy(output, target) + 0.1 * reg(data, output)
        loss.backward()
        optimizer.step()


def join(rank: int, out_dir: str) -> None:
    """Joins the gloo group of 2 ranks that meet through a file in ``out_dir``, on loopback."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    rendezvous = f"file://{os.path.join(out_dir, 'rendezvous')}"
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)


def leave(rank: int, out_dir: str, params: list[torch.Tensor]) -> None:
    """Saves a rank's parameters, then leaves in the order the module's docstring explains."""
    torch.save(params, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def worker(rank: int, out_dir: str) -> None:
    """One DDP rank: trains on its half of the batch, saves its parameters, leaves in order."""
    join(rank, out_dir)
    model, x, target = setup()
    ddp = DistributedDataParallel(model)
    part = slice(rank * BATCH, (rank + 1) * BATCH)
    train(ddp, x[part], target[part])
    leave(rank, out_dir, [p.detach() for p in model.parameters()])


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=2, join=True)
