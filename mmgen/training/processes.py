"""The trainers' `Accelerator`: one process or many, CPU or GPU, the same code.

`accelerate launch --multi_gpu --num_processes N` starts N processes; on a machine without a GPU, accelerate runs
them on the CPU (gloo) only when the Accelerator is told `cpu=True`, so that is what it is told when no GPU is
present (a single process on the CPU is unchanged by it). Under N processes each step's global batch is N times
`--batch-size`, gradients are averaged across processes, logged figures are the global batch's, and only the
main process writes logs, samples and checkpoints (tests/test_multiprocess.py).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator


def gpu_present() -> bool:
    return torch.cuda.is_available() or torch.backends.mps.is_available() or torch.xpu.is_available()


def make_accelerator(args) -> Accelerator:
    """`--cpu` forces the CPU; without a GPU the CPU is used anyway (and several processes can share it)."""
    return Accelerator(cpu=args.cpu or not gpu_present(), mixed_precision=args.mixed_precision)
