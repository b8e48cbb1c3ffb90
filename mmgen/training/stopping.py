"""Stopping a training run between steps: Ctrl-C or SIGTERM (a cluster's preemption, the end of a session) while
it trains lets the step under way finish, saves a checkpoint of it and ends the run, so `--resume` loses no step; a
second Ctrl-C, or one before the steps begin (loading, encoding), stops at once.

    with graceful_stop():                  # around a trainer's run (its `main`)
        for batch in stoppable(batches):   # its steps
            ...
            stop_if_asked(step, args.checkpoint_every, out, save_this_steps_checkpoint)

Single-process runs only: under `accelerate launch` every process would have to stop at the same step, so there a
signal ends the run at once, as without this (its last checkpoint stays).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_requested = False  # a stop was asked for
_armed = False  # steps are running: a first signal asks for a stop rather than stopping at once
_pid = None  # the process that installed the handler (a DataLoader worker inherits it, and stops as by default)


class StopRequested(KeyboardInterrupt):
    """A trainer stopped when asked to, after saving a checkpoint (the message says which)."""


def stop_requested() -> bool:
    return _requested


def _ask_to_stop(signum, frame) -> None:
    global _requested
    if _requested or not _armed or os.getpid() != _pid:
        raise KeyboardInterrupt
    _requested = True
    name = signal.Signals(signum).name
    print(f"\n{name}: stopping after this step, with a checkpoint of it (Ctrl-C again: at once)", file=sys.stderr)


@contextmanager
def graceful_stop() -> Iterator[None]:
    """Ctrl-C and SIGTERM handled as above for as long as the run inside lasts."""
    global _requested, _armed, _pid
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if not single or threading.current_thread() is not threading.main_thread():  # signals reach the main thread
        yield
        return
    _requested, _armed, _pid = False, False, os.getpid()
    previous = {s: signal.signal(s, _ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested, _armed = False, False


def stoppable(steps: Iterable[T]) -> Iterator[T]:
    """`steps` (a trainer's loop), during which a first Ctrl-C or SIGTERM asks for a stop after the step."""
    global _requested, _armed
    _requested, _armed = False, True
    try:
        yield from steps
    finally:
        _armed = False


def stop_if_asked(step: int, checkpoint_every: int, out, save_checkpoint: Callable[[], object]) -> None:
    """After a step: if a stop was asked for, `save_checkpoint()` (unless the run saved one at this step) and stop."""
    if stop_requested():
        if step % checkpoint_every:
            save_checkpoint()
        raise StopRequested(f"{out} has a checkpoint of step {step}")
