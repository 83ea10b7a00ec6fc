"""Trains with the regularizer under FSDP2 (fully_shard; gloo, 2 processes on loopback).

Usage: ``python -m tests.fsdp_worker OUT_DIR``; the ranks meet through a file in OUT_DIR and each
writes the full (unsharded) parameters after training to ``OUT_DIR/rank<r>.pt``. The model, the
batch and the training step are ddp_worker's, written as users write them: nothing about the
regularizer is special under FSDP2. Teardown is ordered as in ddp_worker (barrier, destroy, then
``os._exit``), for the same reason.
"""

from __future__ import annotations

import sys

import torch
import torch.multiprocessing as mp
from torch.distributed.fsdp import fully_shard

from tests.ddp_worker import BATCH, join, leave, setup, train


def worker(rank: int, out_dir: str) -> None:
    """One FSDP2 rank: shards each layer and the root, trains on its half, saves, leaves."""
    join(rank, out_dir)
    model, x, target = setup()
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    part = slice(rank * BATCH, (rank + 1) * BATCH)
    train(model, x[part], target[part])
    leave(rank, out_dir, [p.full_tensor().detach() for p in model.parameters()])


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1],), nprocs=2, join=True)
