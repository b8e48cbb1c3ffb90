"""What a failed or interrupted command says instead of a traceback: what ran out of memory, and how a training
run goes on after Ctrl-C (the lines `mmgen.cli.main` writes)."""

from __future__ import annotations

import re


def out_of_memory(e: RuntimeError) -> str | None:
    """What ran out, said short (e.g. "tried to allocate 29.3 GiB"), if `e` is an allocator's failure; else None."""
    text = str(e)
    if not any(m in text for m in ("can't allocate memory", "out of memory", "Out of memory")):
        return None
    size = re.search(r"tried to allocate (\d+) bytes", text)  # the CPU allocator counts bytes; CUDA says "GiB"
    if size:
        return f"tried to allocate {int(size.group(1)) / 2**30:.1f} GiB"
    size = re.search(r"[Tt]ried to allocate ([\d.]+ [KMG]iB)", text)
    return f"tried to allocate {size.group(1)}" if size else "the device's memory is full"


def memory_advice(args) -> str:
    """The option that makes a command that ran out of memory fit: its batch, else the images' side."""
    if getattr(args, "batch_size", None):
        return f"a --batch-size under {args.batch_size} needs less"
    if getattr(args, "max_side", None) is not None:
        return "a smaller --max-side (the longer side images are scaled to) needs less"
    return "close other programs, or run it on a machine with more free memory"


def resume_hint(args) -> str:
    """What continues an interrupted training run: --resume once it has a checkpoint (a run stopped in training
    saves one first); before that (encoding its data) there is nothing to resume."""
    from .training.checkpoints import checkpoints  # torch: only for a training run

    if getattr(args, "recipe", None) or not getattr(args, "out", None) or checkpoints(args.out):
        return " (the same command with --resume, or the recipe again, continues from the last checkpoint)"
    return " before its first checkpoint: nothing to resume, the same command starts it again"
