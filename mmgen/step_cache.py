"""First-block cache: skip the DiT's later blocks on sampling steps where its first block says little changed.

Adjacent sampling steps ask the DiT nearly the same question: in the middle of a 50-step run of mmgen-base, what
its blocks add moves by 5 to 10 % from one step to the next (docs/speed.md). The first-block cache
(ParaAttention's "First Block Cache", after TeaCache, Liu et al., 2024, https://arxiv.org/abs/2411.19108) runs the
first block at every step and compares its residual (output - input) with the one of the last step that ran in
full: when the mean absolute change, relative to that residual's mean size, is under `threshold`, the other blocks
are skipped and the residual they added at that step is added again. The first step, and every step after too
large a change, run in full, so the cache adapts to the run: at 0.2, mmgen-base runs its first six or seven steps
in full, then fewer and fewer, 13 to 16 of 50 in all. One decision covers the whole batch.

diffusers has the same method as a model hook (`diffusers.hooks.FirstBlockCacheConfig`). It is written out here
because mmgen's DiT is also called outside a sampling run (scoring candidate noises, attention maps, captioning),
where a cache registered on the model would carry one call's residuals into an unrelated one: here a run owns its
cache and hands it to the DiT (`DiT.forward(..., step_cache=...)`), and nothing else ever sees it.

What it changes: a run's images (slightly: mmgen-base reads as well at 0.1 and 0.2 on tuning prompts, and 0.3
draws more duplicates; docs/speed.md); a replay from a later step (`start_step`), which starts with an empty cache
and so computes steps the original run skipped; and attention maps recorded during sampling, which hold the first
block alone on a skipped step. A run stepped by hand (`stepwise`) still lands where the call does. Off unless asked
for (`MMGenPipeline.set_first_block_cache`, `mmgen generate --first-block-cache 0.2`).

Dimension letters: R rows of a DiT batch, T image patches, D model width.
"""

from __future__ import annotations

import numbers

import torch


class FirstBlockCache:
    """One sampling run's cache. Rows of different batch sizes (guided steps run both guidance halves, unguided
    ones the conditional half alone) are cached apart."""

    def __init__(self, threshold: float):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
            raise ValueError(f"the first-block cache threshold must be between 0 and 1 (e.g. 0.2), got {threshold!r}")
        self.threshold = float(threshold)
        self.head: dict[int, torch.Tensor] = {}  # rows -> (R, T, D) the first block's residual at the last full step
        self.tail: dict[int, torch.Tensor] = {}  # rows -> (R, T, D) what the other blocks added at that step
        self.computed = 0  # steps run in full
        self.skipped = 0

    def can_skip(self, head_residual: torch.Tensor) -> bool:
        """Whether the blocks after the first may be skipped at this step, given its first block's residual."""
        last = self.head.get(head_residual.shape[0])
        if last is None:
            return False
        change = (head_residual - last).abs().mean() / last.abs().mean().clamp_min(1e-12)
        return change.item() < self.threshold

    def skip(self, hidden: torch.Tensor) -> torch.Tensor:
        """The first block's output (R, T, D) plus the residual the other blocks added at the last full step."""
        self.skipped += 1
        return hidden + self.tail[hidden.shape[0]]

    def store(self, head_residual: torch.Tensor, tail_residual: torch.Tensor) -> None:
        """Record a step run in full: its first block's residual and what the others added (R, T, D) each."""
        self.computed += 1
        self.head[head_residual.shape[0]] = head_residual
        self.tail[head_residual.shape[0]] = tail_residual
