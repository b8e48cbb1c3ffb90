"""The trainers' `Accelerator`: one process or many, CPU or GPU, the same code.

`accelerate launch --multi_gpu --num_processes N` starts N processes; on a machine without a GPU, accelerate runs
them on the CPU (gloo) only when the Accelerator is told `cpu=True`, so that is what it is told when no GPU is
present (a single process on the CPU is unchanged by it). Under N processes each step's global batch is N times
`--batch-size`, gradients are averaged across processes, logged figures are the global batch's, and only the
main process writes logs, samples and checkpoints (tests/test_multiprocess.py).

Mixed precision: `--mixed-precision` where given, else accelerate's own setting (`accelerate launch
--mixed_precision`, `accelerate config`), else none. The run log's header records what ran
(`accelerator.mixed_precision`), and the process count.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import InitProcessGroupKwargs

# How long processes wait for each other: the main one encodes the generator's training set (on a CPU, a large
# folder takes more than torch's default 10 minutes) while the others wait to read its cache.
GROUP_TIMEOUT = timedelta(hours=3)


def print_once(*values) -> None:
    """`print`, by the main process alone under `accelerate launch` (where no Accelerator is at hand: a dataset's
    summary, said by every process that reads it)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(*values)


def launch_warnings(accelerator: Accelerator) -> list[str]:
    """What an `accelerate launch` that asked for several processes but started one should hear: accelerate runs
    `--num_processes N` with `--cpu`, or without `--multi_gpu`, as one process (and torch then on one thread)."""
    env = os.environ
    if accelerator.num_processes > 1 or "ACCELERATE_MIXED_PRECISION" not in env or "MASTER_ADDR" not in env:
        return []
    said = [
        "accelerate launch started 1 process, not the several asked for: use `accelerate launch --multi_gpu "
        "--num_processes N -m mmgen.cli ...` (also on a CPU; --cpu, or no --multi_gpu, runs one process)"
    ]
    if torch.get_num_threads() == 1 and (os.cpu_count() or 1) > 1:
        said.append(
            f"torch runs on 1 thread of {os.cpu_count()} cores here (OMP_NUM_THREADS={env.get('OMP_NUM_THREADS')})"
        )
    return said


def gpu_present() -> bool:
    return torch.cuda.is_available() or torch.backends.mps.is_available() or torch.xpu.is_available()


def use_cpu(args) -> bool:
    """`--cpu` forces the CPU; without a GPU the CPU is used anyway (and several processes can share it). The
    recipe runner's first `PartialState` must be told the same, or under `accelerate launch` without a GPU every
    process would take itself for the only one."""
    return bool(args.cpu) or not gpu_present()


def make_accelerator(args) -> Accelerator:
    """The run's Accelerator, in its own precision: accelerate keeps one precision per Python process and would
    refuse (or, for an option left to accelerate, silently keep) a second run's, so the state of a run before this
    one in the same process (a recipe's earlier stage, a test) is dropped first; the processes' group stays.
    ValueError for fp16 on the CPU, where accelerate trains in float32 instead (autocast to fp16 is off there)."""
    AcceleratorState._reset_state()  # not PartialState's: the distributed group outlives a run
    group = InitProcessGroupKwargs(timeout=GROUP_TIMEOUT)
    accelerator = Accelerator(cpu=use_cpu(args), mixed_precision=args.mixed_precision, kwargs_handlers=[group])
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise ValueError(
            "mixed precision fp16 needs a GPU: on the CPU accelerate would train in float32 instead; "
            "use --mixed-precision bf16 or no"
        )
    for warning in launch_warnings(accelerator):
        accelerator.print(f"warning: {warning}")
    return accelerator


def hardware(accelerator: Accelerator) -> str:
    """What a run trained on, for its log and model card: "a 16-core CPU (no GPU)", "1 NVIDIA H100 80GB HBM3",
    "2 processes, each on 1 NVIDIA H100 80GB HBM3"."""
    device, n = accelerator.device, accelerator.num_processes
    if device.type == "cuda":
        what = f"1 {torch.cuda.get_device_name(device)}"
    elif device.type == "cpu":
        cores = torch.get_num_threads() if n == 1 else os.cpu_count()
        what = f"a {cores}-core CPU (no GPU)"
    else:  # mps, xpu
        what = f"1 {device.type} device"
    if n == 1:
        return what
    return f"{n} processes on {what}" if device.type == "cpu" else f"{n} processes, each on {what}"
