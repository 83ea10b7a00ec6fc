"""Trains with the regularizer under FSDP2 (fully_shard; gloo, 2 processes on loopback).

Usage: ``python -m tests.fsdp_worker OUT_DIR``; the ranks meet through a file in OUT_DIR and each
writes the full (unsharded) parameters after training to ``OUT_DIR/rank<r>.pt``. The model, the
batch and the training step are ddp_worker's, written as users write them: nothing about the
regularizer is special under FSDP2. Teardown is ordered as in ddp_worker (barrier, destroy, then
``os._exit``), for the same reason.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.fsdp import fully_shard

from tests.ddp_worker import BATCH, setup, train


def worker(rank: int, out_dir: str) -> None:
    """One FSDP2 rank: shards each layer and the root, trains on its half, saves, leaves."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    rendezvous = f"file://{os.path.join(out_dir, 'rendezvous')}"
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    model, x, target = setup()
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    part = slice(rank * BATCH, (rank + 1) * BATCH)
    train(model, x[part], target[part])
    full = [p.full_tensor().detach() for p in model.parameters()]
    torch.save(full, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=2, join=True)
