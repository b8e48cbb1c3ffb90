"""The one thread every model call of the app runs on, and how many cores it uses.

gradio runs event handlers in a pool of worker threads, and a generator handler may resume on another thread at
each `yield`. With PyTorch's OpenMP backend every thread that calls into torch starts a thread team of its own
(and, with glibc, a malloc arena): the teams of different workers then compete for the same cores, spinning at
their barriers while another team works, and the server's memory grows with the threads that ever ran a model.
So handlers hand their model work to `ModelThread`: one thread, one team; concurrent jobs take turns step by
step (each waits for the others' current step, never for their whole run); drawing, encoding and sending stay in
gradio's threads.

The team uses every core (MMGEN_TORCH_THREADS sets another count), and it is the process's only team with more
than one thread (`one_thread_elsewhere` says why that matters). On the project's 2-core machine one default
generation takes 0.98 s in the app with two threads against 1.13 s with one, and 0.85 s in a script (medians,
timed in turn; docs/serving.md).

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
    """MMGEN_TORCH_THREADS, else every core this process may use."""
    if environ.get("MMGEN_TORCH_THREADS", "").strip():
        threads = int(environ["MMGEN_TORCH_THREADS"])
        if threads < 1:
            raise ValueError(f"MMGEN_TORCH_THREADS must be at least 1, got {threads}")
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores)


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


def one_thread_elsewhere() -> None:
    """Make one intra-op thread the count every thread adopts at its first torch op, the model thread excepted.

    `torch.set_num_threads` sets two things: the calling thread's OpenMP team size, and the size that every thread
    which has not yet run a parallel op takes when it first does. So after the model thread asked for 2, each
    thread that later touched torch (a loader copying weights, a gradio worker drawing a frame) started a team of
    its own, whose idle worker stays. With more OpenMP threads than cores, libgomp makes idle workers sleep after
    about 100 spins instead of spinning for milliseconds, so the model team's worker was woken through the kernel
    at every op: about 30,000 context switches a generation in the server, and a 2-thread model slower than a
    1-thread one (docs/serving.md). A thread whose first op is an MKL call reads OpenMP's own default instead,
    which `app.py` sets to one (OMP_NUM_THREADS) before torch loads. Called from a short-lived thread, so the
    caller's own count is left as it is."""
    helper = threading.Thread(target=torch.set_num_threads, args=(1,), name="mmgen-threads-default")
    helper.start()
    helper.join()


class ModelThread:
    def __init__(self, threads: int | None = None, name: str = "mmgen-model"):
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident = self._pool.submit(self._start).result()
        one_thread_elsewhere()  # _start's count became every later thread's default too: give it back

    def _start(self) -> int:
        torch.get_num_threads()  # ATen reads the default count on a thread's first use: let it, before setting ours
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
