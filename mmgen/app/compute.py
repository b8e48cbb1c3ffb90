"""The one thread every model call of the app runs on, and how many cores it uses.

gradio runs event handlers in a pool of worker threads, and a generator handler may resume on another thread at
each `yield`. With PyTorch's OpenMP backend every thread that calls into torch starts a thread team of its own
(and, with glibc, a malloc arena): the teams of different workers then compete for the same cores, spinning at
their barriers while another team works, and the server's memory grows with the threads that ever ran a model.
So handlers hand their model work to `ModelThread`: one thread, one team; concurrent jobs take turns step by
step (each waits for the others' current step, never for their whole run); drawing, encoding and sending stay in
gradio's threads.

The team leaves one core to the server itself (gradio encodes images, streams previews and serves files while a
model runs): on a 2-vCPU Space the model runs on one core, and no barrier of its team spins while gradio holds
the other. On the project's 2-core machine, shared with other jobs, one default generation took 3.3 s in the app
with one thread against 3.7 s with two, and `pipe(...)` in a script 2.4 s against 2.9 s (medians, timed in
turn; docs/serving.md). MMGEN_TORCH_THREADS sets another count (e.g. on a machine of its own with more cores).

    compute = ModelThread()
    out = compute(run.step)  # runs on the model thread, returns its result (or raises its exception)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")


def default_threads(environ=os.environ) -> int:
    """MMGEN_TORCH_THREADS, else every core but one (at least one)."""
    if environ.get("MMGEN_TORCH_THREADS", "").strip():
        threads = int(environ["MMGEN_TORCH_THREADS"])
        if threads < 1:
            raise ValueError(f"MMGEN_TORCH_THREADS must be at least 1, got {threads}")
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast about halves the DiT's
    time; elsewhere bf16 is emulated and slower than float32. Reads /proc/cpuinfo (Linux); False when unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


class ModelThread:
    def __init__(self, threads: int | None = None, name: str = "mmgen-model"):
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident = self._pool.submit(self._start).result()

    def _start(self) -> int:
        torch.set_num_threads(self.threads)  # ATen's intra-op count: this thread's team (the only one) uses it
        return threading.get_ident()

    def __call__(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """`fn(*args, **kwargs)` on the model thread; called from the model thread itself, it runs inline."""
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        return self._pool.submit(fn, *args, **kwargs).result()

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        """Start `fn` on the model thread without waiting (a warm-up); returns its Future."""
        return self._pool.submit(fn, *args, **kwargs)
