"""Trains with the regularizer under DistributedDataParallel (gloo, 2 processes on loopback).

Usage: ``python ddp_worker.py OUT_FILE PORT``; rank 0 writes the final parameters to OUT_FILE.
``setup`` and ``train`` are shared with the single-process run in test_reliability.py.
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


def worker(rank: int, out_file: str, port: str) -> None:
    """One DDP rank: trains on its half of the batch; rank 0 saves the parameters."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = port
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model, x, target = setup()
    ddp = DistributedDataParallel(model)
    part = slice(rank * BATCH, (rank + 1) * BATCH)
    train(ddp, x[part], target[part])
    if rank == 0:
        torch.save([p.detach() for p in model.parameters()], out_file)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1], sys.argv[2]), nprocs=2, join=True)
