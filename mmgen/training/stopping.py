"""Stopping a training run between steps: Ctrl-C or SIGTERM (a cluster's preemption, the end of a session) lets the
step under way finish, saves a checkpoint of it and ends the run, so `--resume` loses no step; a second Ctrl-C
stops at once.

    with graceful_stop():          # around a trainer's run (its `main`)
        ...                        # in the loop, after a step:
        stop_if_asked(step, args.checkpoint_every, out, save_this_steps_checkpoint)

Single-process runs only: under `accelerate launch` every process would have to stop at the same step, so there a
signal ends the run at once, as without this (its last checkpoint stays).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_requested = False


class StopRequested(KeyboardInterrupt):
    """A trainer stopped when asked to, after saving a checkpoint (the message says which)."""


def stop_requested() -> bool:
    return _requested


def _ask_to_stop(signum, frame) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True
    name = signal.Signals(signum).name
    print(f"\n{name}: stopping after this step, with a checkpoint of it (Ctrl-C again: at once)", file=sys.stderr)


@contextmanager
def graceful_stop() -> Iterator[None]:
    """Ctrl-C and SIGTERM ask the run inside to stop after its step, for as long as it lasts."""
    global _requested
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if not single or threading.current_thread() is not threading.main_thread():  # signals reach the main thread
        yield
        return
    _requested = False
    previous = {s: signal.signal(s, _ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = False


def stop_if_asked(step: int, checkpoint_every: int, out, save_checkpoint: Callable[[], object]) -> None:
    """After a step: if a stop was asked for, `save_checkpoint()` (unless the run saved one at this step) and stop."""
    if stop_requested():
        if step % checkpoint_every:
            save_checkpoint()
        raise StopRequested(f"{out} has a checkpoint of step {step}")
