"""Checkpoint folders and run logs shared by the trainers: `OUT/checkpoints/step-N/`, `OUT/train_log.jsonl`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch


def checkpoints(out: Path) -> list[Path]:
    """OUT/checkpoints/step-N folders, oldest first."""
    return sorted((Path(out) / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoints(out)
    return found[-1] if found else None


def prune_checkpoints(out: Path, keep: int = 2) -> None:
    for old in checkpoints(out)[:-keep]:
        shutil.rmtree(old)


def start_log(path: Path, args, **extra) -> None:
    """First line of a run's log: the exact command, its settings, and anything else worth keeping."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    settings = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)}
    Path(path).write_text(json.dumps({"command": command, "args": settings, **extra}) + "\n")


def append_log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def save_training_state(ckpt: Path, optimizer, scheduler, step: int) -> None:
    """Optimizer, LR schedule, step and RNG: tensors and numbers only, so loadable with weights_only=True."""
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
             "torch_rng": torch.get_rng_state()}  # fmt: skip
    torch.save(state, Path(ckpt) / "training_state.pt")


def load_training_state(ckpt: Path, optimizer, scheduler) -> int:
    """Restore what save_training_state wrote; returns the step to continue from."""
    state = torch.load(Path(ckpt) / "training_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"]
