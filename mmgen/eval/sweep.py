"""The settings sweep: accuracy of each sampler x guidance x codebook_snap (x interval x best-of-N) on tuning prompts.

This is how the pipeline's defaults are chosen (`make eval-mmgen-base-64` runs three sweeps), on prompts drawn from
their own seed (`mmgen.eval.prompts.TUNE_SEED`), so the reported held-out evaluation never informs the choice.
Each setting gives one row of the results JSON, from which the docs' tables are written.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from ..settings import SCHEDULER_CLASSES, check_sampling
from ..vocabulary import Vocabulary
from .accuracy import Sampling, evaluate
from .prompts import TUNING_PROMPTS, PromptSets

SWEEP_SCHEDULERS = tuple(SCHEDULER_CLASSES)  # every sampler the command line offers
SWEEP_GUIDANCE = (1.0, 2.0, 3.0, 4.0, 6.0)
SWEEP_HEADER = (
    f"{'scheduler':<16}{'cfg':>5}{'snap':>6}{'1-all':>8}{'color':>8}{'shape':>8}{'pos':>8}{'2-all':>8}{'2-dup':>8}"
    f"{'free':>6}{'sec':>7}{'1-strict':>9}{'2-strict':>9}"
)


@dataclass(frozen=True)
class SweepGrid:
    """The settings a sweep tries: every combination of the values below, in this order."""

    schedulers: tuple[str, ...] = SWEEP_SCHEDULERS  # short names of mmgen.pipeline.SCHEDULERS
    guidance_scales: tuple[float, ...] = SWEEP_GUIDANCE
    codebook_snaps: tuple[float, ...] = (0.0,)  # 0: the samplers alone (the snap is then chosen at the chosen one)
    # (low, high) timesteps to guide in, an entry None for every step (its rows carry no `guidance_interval`);
    # None: the pipeline's default interval only
    guidance_intervals: tuple[tuple[float, float] | None, ...] | None = None
    # best-of-N starting noise; an entry None for the pipeline's default (its rows carry no `num_candidates`)
    num_candidates: tuple[int | None, ...] = (None,)
    steps: int | None = None  # None: the pipeline's default
    first_block_cache: float | None = None  # None: the pipeline's default (mmgen/step_cache.py)


def sweep(
    pipe, grid: SweepGrid = SweepGrid(), prompts: PromptSets = TUNING_PROMPTS, vocabulary: Vocabulary | None = None
) -> list[dict]:
    """One row per setting of `grid`, measured on tuning `prompts` (`PromptSets.tuning`; with free prompts, each
    setting also counts their fewest distinct cells over 16 seeds: 96 more images per setting). Prints each row
    under SWEEP_HEADER as it comes."""
    points = grid_points(pipe, grid)  # every setting checked before the first row's minutes are spent
    rows = []
    for scheduler, sampling, with_candidates in points:
        pipe.use_scheduler(scheduler)
        t0 = time.perf_counter()
        results = evaluate(pipe, prompts, sampling, vocabulary=vocabulary)
        row = sweep_row(scheduler, sampling, results, prompts, with_candidates=with_candidates)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def grid_points(pipe, grid: SweepGrid) -> list[tuple[str, Sampling, bool]]:
    """(scheduler, settings, whether the grid names candidates) for every setting of `grid`, in order, each checked
    as a call would check it (ValueError naming the first that a call would refuse)."""
    from ..denoising import set_schedule

    intervals = grid.guidance_intervals
    if intervals is None:
        intervals = (Sampling.defaults(pipe).guidance_interval,)
    points = []
    for scheduler, guidance, snap, interval, n_cand in itertools.product(
        grid.schedulers, grid.guidance_scales, grid.codebook_snaps, intervals, grid.num_candidates
    ):
        changes = {"guidance_scale": guidance, "codebook_snap": snap, "guidance_interval": interval}
        changes |= {} if grid.steps is None else {"num_inference_steps": grid.steps}
        changes |= {} if grid.first_block_cache is None else {"first_block_cache": grid.first_block_cache}
        changes |= {} if n_cand is None else {"num_candidates": n_cand}
        s = Sampling.defaults(pipe, **changes)
        check_sampling(s.num_inference_steps, s.guidance_scale, s.guidance_interval, s.codebook_snap, s.num_candidates)
        set_schedule(pipe.with_scheduler(scheduler).scheduler, s.num_inference_steps)
        points.append((scheduler, s, n_cand is not None))
    return points


def sweep_row(
    scheduler: str, sampling: Sampling, results: dict, prompts: PromptSets, *, with_candidates: bool = True
) -> dict:
    """A setting and its accuracy (`evaluate`'s results) as one flat row of the sweep's JSON; `with_candidates`
    False leaves out `num_candidates` (the sweep named none)."""
    row = {
        "scheduler": scheduler,
        "guidance": sampling.guidance_scale,
        "codebook_snap": sampling.codebook_snap,
        "steps": sampling.num_inference_steps,
        "single_all": results["single"]["all"],
        "single_color": results["single"]["color"],
        "single_shape": results["single"]["shape"],
        "single_position": results["single"]["position"],
        "two_all": results["two"]["all"],
        "two_drawn_twice": results["extra_objects"]["two"]["a named object drawn twice"],
        "single_all_strict": results["strict_judge"]["single"]["all"],  # the same images read by the strict judge
        "two_all_strict": results["strict_judge"]["two"]["all"],
        "n_single": prompts.n_single,
        "n_two": prompts.n_two,
    }
    if sampling.guidance_interval is not None:  # a row without one guided every step
        row["guidance_interval"] = list(sampling.guidance_interval)
    if with_candidates:
        row["num_candidates"] = sampling.num_candidates
    if "paraphrased" in results:
        row["reworded_all"] = results["paraphrased"]["all"]
        row["reworded_all_strict"] = results["strict_judge"]["paraphrased"]["all"]
        row["n_reworded"] = prompts.n_reworded
    if "paraphrased_known_words" in results:
        row["reworded_known_words_all"] = results["paraphrased_known_words"]["all"]
        row["reworded_known_words_all_strict"] = results["strict_judge"]["paraphrased_known_words"]["all"]
    if prompts.free:
        row["free_min"] = results["free"]["min"]
        row["free_cells"] = results["free"]["distinct_cells_over_16_seeds"]
    return row


def format_row(row: dict) -> str:
    """A sweep row as one line under SWEEP_HEADER, with its interval and best-of-N when the row names them."""
    text = (
        f"{row['scheduler']:<16}{row['guidance']:>5.1f}{row['codebook_snap']:>6.2f}{row['single_all']:>8.3f}"
        f"{row['single_color']:>8.3f}{row['single_shape']:>8.3f}{row['single_position']:>8.3f}{row['two_all']:>8.3f}"
        f"{row['two_drawn_twice']:>8.3f}{row.get('free_min', '-'):>6}{row['seconds']:>7.1f}"
    )
    if "single_all_strict" in row:  # rows written before the strict judge have none
        text += f"{row['single_all_strict']:>9.3f}{row['two_all_strict']:>9.3f}"
    if "reworded_all" in row:
        text += f"  reworded {row['reworded_all']:.3f} (strict {row['reworded_all_strict']:.3f})"
    if "reworded_known_words_all" in row:
        text += f", in known words {row['reworded_known_words_all']:.3f}"
        text += f" (strict {row['reworded_known_words_all_strict']:.3f})"
    if "guidance_interval" in row:
        text += "  guided in {:g}..{:g}".format(*row["guidance_interval"])
    if "num_candidates" in row:
        text += f"  best of {row['num_candidates']}"
    return text
