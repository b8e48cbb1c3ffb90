"""First-block cache: skip the DiT's later blocks on sampling steps where its first block says little changed.

Adjacent sampling steps ask the DiT nearly the same question: in the middle of a 50-step run of mmgen-base, what
its blocks add moves by 5 to 10 % from one step to the next (docs/speed.md). The first-block cache
(ParaAttention's "First Block Cache", after TeaCache, Liu et al., 2024, https://arxiv.org/abs/2411.19108) runs the
first block at every step and compares its residual (output - input) with the one of the last step that ran in
full: when the mean absolute change, relative to that residual's mean size, is under `threshold`, the other blocks
are skipped and the residual they added at that step is added again. The first step, and every step after too
large a change, run in full, so the cache adapts to the run: at 0.2, mmgen-base runs its first six or seven steps
in full, then fewer and fewer, 13 to 16 of 50 in all. Each image decides for itself (over both guidance halves):
an image comes out the same in any batch, and the later blocks run on the rows that need them.

diffusers has the same method as a model hook (`diffusers.hooks.FirstBlockCacheConfig`). It is written out here
because mmgen's DiT is also called outside a sampling run (scoring candidate noises, attention maps, captioning),
where a cache registered on the model would carry one call's residuals into an unrelated one: here a run owns its
cache and hands it to the DiT (`DiT.forward(..., step_cache=...)`), and nothing else ever sees it.

What it changes: a run's images (slightly: mmgen-base reads as well at 0.1 and 0.2 on tuning prompts, and 0.3
draws more duplicates; docs/speed.md); a replay from a later step (`start_step`), which starts with an empty cache
and so computes steps the original run skipped; and attention maps recorded during sampling, which hold the first
block alone on a skipped step. A run stepped by hand (`stepwise`) still lands where the call does. A sampling
setting like the others: `pipe(..., first_block_cache=0.2)`, `mmgen generate --first-block-cache 0.2`, recorded in
run cards; off by default (0), and a model may turn it on for itself (no shipped model does: docs/speed.md).

Dimension letters: R rows of a DiT batch, T image patches, D model width.
"""

from __future__ import annotations

import numbers

import torch


def check_threshold(threshold) -> float:
    """The threshold as a float (0: off); ValueError with a message for people unless it is a number from 0 to
    under 1."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold < 1:
        raise ValueError(
            f"The first-block cache threshold must be 0 (off) or between 0 and 1 (e.g. 0.2), got {threshold!r}."
        )
    return float(threshold)


class FirstBlockCache:
    """One sampling run's cache, decided image by image: each image skips or runs its later blocks by its own
    change, so an image never depends on the rest of its batch (nor a candidate's run on the other candidates).
    A guided step runs each image twice (rows i and images + i: the two guidance halves), an unguided one once;
    the two are cached apart."""

    def __init__(self, threshold: float, images: int):
        self.threshold, self.images = check_threshold(threshold), images
        self.head: dict[int, torch.Tensor] = {}  # rows -> (R, T, D) each row's first-block residual, last full step
        self.tail: dict[int, torch.Tensor] = {}  # rows -> (R, T, D) what the other blocks added at that step
        self.computed = 0  # images run in full, summed over steps
        self.skipped = 0

    def rows_to_run(self, head_residual: torch.Tensor) -> torch.Tensor:
        """(n,) the rows whose later blocks must run at this step, given every row's first-block residual (R, T, D):
        all rows of each image whose residual moved by `threshold` or more (mean absolute change over its rows,
        relative to their mean size) since its last full step; every row at the first step of its kind."""
        rows, last = head_residual.shape[0], self.head.get(head_residual.shape[0])
        if rows % self.images:
            raise ValueError(f"a run of {self.images} images cannot hold a DiT batch of {rows} rows")
        groups = rows // self.images  # 2 with both guidance halves, else 1
        if last is None:
            run = torch.ones(self.images, dtype=torch.bool, device=head_residual.device)
        else:
            change = _mean_abs_per_image(head_residual.float() - last.float(), self.images)  # (images,)
            run = change >= self.threshold * _mean_abs_per_image(last.float(), self.images).clamp_min(1e-12)
        n = int(run.sum())
        self.computed, self.skipped = self.computed + n, self.skipped + self.images - n
        return run.repeat(groups).nonzero().squeeze(1)  # row g * images + i is image i's row in group g

    def reused(self, first: torch.Tensor) -> torch.Tensor:
        """(R, T, D): each row's first-block output plus what the other blocks added at its last full step."""
        tail = self.tail.get(first.shape[0])
        return first if tail is None else first + tail

    def store(self, rows: torch.Tensor, head_residual: torch.Tensor, first: torch.Tensor, out: torch.Tensor) -> None:
        """Record the rows run in full (`rows`, (n,)): their first-block residual, from `head_residual` (R, T, D),
        and what the other blocks added, `out` (n, T, D) over `first` (R, T, D)."""
        key = head_residual.shape[0]
        if key not in self.head:  # the first step of its kind runs every row
            self.head[key], self.tail[key] = head_residual, torch.zeros_like(first)
        self.head[key][rows] = head_residual[rows]
        self.tail[key][rows] = out - first[rows]


def _mean_abs_per_image(t: torch.Tensor, images: int) -> torch.Tensor:
    """(images,) the mean absolute value of each image's rows of t (R, T, D), row g * images + i being image i's."""
    return t.abs().reshape(-1, images, t[0].numel()).mean(dim=(0, 2))
