"""The numbers of a training run checked before anything loads: a zero interval would divide by zero at the
first step, a zero-step run would publish an untrained model, a negative rate would train backwards (a rate of 0
is allowed: a run that changes nothing). The command line and a recipe's tables both reach the trainers through
here, so both get the same one-line errors."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
import torch
from accelerate import Accelerator

from ..eval import count

AT_LEAST_ONE = (
    "steps",
    "batch_size",
    "log_every",
    "val_every",
    "checkpoint_every",
    "num_samples",
    "resolution",
    "sample_size",
)
AT_LEAST_ZERO = (
    "lr",
    "warmup_steps",
    "disc_start",
    "num_workers",
    "feature_weight",
    "disc_weight",
    "text_refiner_layers",
)
FRACTIONS = ("caption_dropout", "photo_fraction", "ema_decay")  # in [0, 1]


def check_run_options(args: argparse.Namespace) -> None:
    """ValueError naming the first option out of its range (options a trainer does not have are skipped)."""

    def given(name):
        value = getattr(args, name, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        return value

    def refuse(name, value, want):
        raise ValueError(f"--{name.replace('_', '-')} must be {want}, got {value}")

    for name in AT_LEAST_ONE:
        if (value := given(name)) is not None and value < 1:
            refuse(name, value, "at least 1")
    for name in AT_LEAST_ZERO:
        if (value := given(name)) is not None and value < 0:
            refuse(name, value, "0 or more")
    for name in FRACTIONS:
        if (value := given(name)) is not None and not 0 <= value <= 1:
            refuse(name, value, "between 0 and 1")
    data, out = getattr(args, "data", None), getattr(args, "out", None)
    if out:
        check_out_folder(out)
    if data not in (None, "shapes") and out and Path(data).is_dir() and Path(out).resolve() == Path(data).resolve():
        raise ValueError(
            f"--out is the image folder itself ({data}): the run's samples, checkpoints and log would be read back "
            "as data (and its next read finds no images). Train into a folder of its own, e.g. runs/mine"
        )


def check_out_folder(out: str) -> None:
    """ValueError when the run's folder cannot be made (a file in its path, a folder not writable): said before
    the data is encoded, not after. Nothing is left behind: a test folder is made and removed where `out`'s would
    go, in the nearest folder that exists."""
    path = Path(out).absolute()
    there = next(p for p in (path, *path.parents) if p.exists())
    if not there.is_dir():
        raise ValueError(f"--out {out}: {there} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=there))
    except OSError as e:
        raise ValueError(f"--out {out}: cannot make a folder in {there} ({e.strerror or e})") from None


def add_run_arguments(
    p: argparse.ArgumentParser,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    log_every: int,
    val_every: int,
    checkpoint_every: int,
) -> None:
    """The options every trainer has, with its own defaults: how long and how fast it trains, how often it logs,
    validates and checkpoints, and where it runs."""
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps")
    p.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="images per step on each process (N processes under `accelerate launch` train on N times as many)",
    )
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (AdamW; linear warm-up, then cosine to 0)")
    p.add_argument("--warmup-steps", type=int, default=warmup_steps, help="steps of linear warm-up")
    p.add_argument(
        "--seed", type=count(0), default=0, help="seeds the initial weights, the data and the noise: a run repeats"
    )
    p.add_argument("--log-every", type=int, default=log_every, help="steps between lines of train_log.jsonl")
    p.add_argument("--val-every", type=int, default=val_every, help="steps between validations and sample grids")
    p.add_argument("--checkpoint-every", type=int, default=checkpoint_every, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument(
        "--mixed-precision",
        choices=["no", "bf16", "fp16"],
        default=None,
        help="autocast matmuls and convs (bf16: faster on CPUs with AVX512-BF16 or AMX, the DiT ~2.5x; fp16: GPUs "
        "only); default: accelerate's own setting, else no",
    )
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")


def note_shapes_folder(args: argparse.Namespace) -> None:
    """`--data shapes` draws shapes-v1 scenes; a folder named shapes here (`mmgen shapes --out shapes` makes one) is
    not read: said once, where the data is read."""
    if args.data == "shapes" and Path("shapes").is_dir():
        print("note: --data shapes draws shapes-v1 scenes; to train on the folder named shapes here, give ./shapes")


def check_batch_fits(batch_size: int, loss_of: Callable[[int], torch.Tensor], accelerator: Accelerator) -> None:
    """ValueError when a step's batch cannot fit in the free memory of `accelerator`'s device: a line at once,
    not an allocator's traceback (or the system's out-of-memory kill) after minutes of drawing the batch. What an
    item costs is measured, under the run's autocast: the bytes of the tensors autograd keeps for the backward pass
    of `loss_of(2)` (a loss over 2 items) less those of `loss_of(1)` (the weights, kept once whatever the batch,
    cancel out). That is a lower bound of a step's memory; devices whose free memory is unknown are not checked."""
    device = accelerator.device
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    elif device.type == "cpu":
        free = psutil.virtual_memory().available
    else:
        return
    kept = [kept_bytes(loss_of, n, accelerator) for n in (1, 2)]
    if (need := batch_size * (kept[1] - kept[0])) > free:
        raise ValueError(
            f"--batch-size {batch_size} does not fit: its activations alone take {need / 2**30:.1f} GiB, and "
            f"{device.type} memory has {free / 2**30:.1f} GiB free. A smaller --batch-size fits"
        )


def kept_bytes(loss_of: Callable[[int], torch.Tensor], n: int, accelerator: Accelerator) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of `loss_of(n)`, each storage once (a layer's
    output that the next layer keeps as its input is one tensor)."""
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with accelerator.autocast(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_of(n)
    return sum(storages.values())
