"""Stopping a training run between steps: Ctrl-C or SIGTERM (a cluster's preemption, the end of a session) while
it trains lets the step under way finish, saves a checkpoint of it and ends the run, so `--resume` loses no step; a
second Ctrl-C, or one before the steps begin (loading, encoding), stops at once.

    with graceful_stop():                  # around a trainer's run (its `main`)
        for batch in stoppable(batches):   # its steps
            ...
            stop_if_asked(step, args.checkpoint_every, out, save_this_steps_checkpoint)

Under `accelerate launch` the same: every process learns at each step whether any was asked (`stop_if_asked`'s
`accelerator`: one all-reduce of a flag), so all stop at the same step and the main process saves it. A launcher's
SIGTERM right after a Ctrl-C is that Ctrl-C passed on, not a second one: accelerate's one-process launcher sends it
at once, and kills the run 5 s later; torchrun's agent (several processes) waits 30 s.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_requested = False  # a stop was asked for
_armed = False  # steps are running: a first signal asks for a stop rather than stopping at once
_pid = None  # the process that installed the handler (a DataLoader worker inherits it, and stops as by default)
_first: tuple[int, float] | None = None  # the signal that asked, and when
PASSED_ON_S = 10.0  # a SIGTERM this soon after a Ctrl-C is a launcher passing the Ctrl-C on


class StopRequested(KeyboardInterrupt):
    """A trainer stopped when asked to, after saving a checkpoint (the message says which)."""


def stop_requested() -> bool:
    return _requested


def _ask_to_stop(signum, frame) -> None:
    global _requested, _first
    if _requested and _passed_on(signum):
        return
    if _requested or not _armed or os.getpid() != _pid:
        raise KeyboardInterrupt
    _requested, _first = True, (signum, time.monotonic())
    name = signal.Signals(signum).name
    print(f"\n{name}: stopping after this step, with a checkpoint of it (Ctrl-C again: at once)", file=sys.stderr)


def _passed_on(signum) -> bool:
    """Whether `signum` is a launcher's SIGTERM passing on the Ctrl-C that asked to stop a moment ago."""
    return (
        signum == signal.SIGTERM
        and _first is not None
        and _first[0] == signal.SIGINT
        and time.monotonic() - _first[1] < PASSED_ON_S
    )


@contextmanager
def graceful_stop() -> Iterator[None]:
    """Ctrl-C and SIGTERM handled as above for as long as the run inside lasts."""
    global _requested, _armed, _pid, _first
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread
        yield
        return
    _requested, _armed, _pid, _first = False, False, os.getpid(), None
    previous = {s: signal.signal(s, _ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested, _armed, _first = False, False, None


def stoppable(steps: Iterable[T]) -> Iterator[T]:
    """`steps` (a trainer's loop), during which a first Ctrl-C or SIGTERM asks for a stop after the step."""
    global _requested, _armed, _first
    _requested, _armed, _first = False, True, None
    try:
        yield from steps
    finally:
        _armed = False


def stop_if_asked(
    step: int, checkpoint_every: int, out, save_checkpoint: Callable[[], object], accelerator=None
) -> None:
    """After a step: if a stop was asked for (of any process, under `accelerator`'s several), `save_checkpoint()` on
    the main process (unless the run saved one at this step) and stop, every process at this step."""
    asked = stop_requested()
    several = accelerator is not None and accelerator.num_processes > 1
    if several:  # every process calls this after every step: a flag's all-reduce, so all stop together
        import torch

        flag = torch.tensor([float(asked)], device=accelerator.device)
        asked = bool(accelerator.reduce(flag, "sum").item() > 0)
    if asked:
        if step % checkpoint_every and (not several or accelerator.is_main_process):
            save_checkpoint()
        if several:
            accelerator.wait_for_everyone()
        raise StopRequested(f"{out} has a checkpoint of step {step}")
