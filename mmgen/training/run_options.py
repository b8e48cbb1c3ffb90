"""The numbers of a training run checked before anything loads: a zero interval would divide by zero at the
first step, a zero-step run would publish an untrained model, a negative rate would train backwards (a rate of 0
is allowed: a run that changes nothing). The command line and a recipe's tables both reach the trainers through
here, so both get the same one-line errors."""

from __future__ import annotations

import argparse
import math

AT_LEAST_ONE = ("steps", "batch_size", "log_every", "val_every", "checkpoint_every", "num_samples", "resolution")
AT_LEAST_ZERO = ("lr", "warmup_steps", "disc_start", "num_workers", "feature_weight", "disc_weight")
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
