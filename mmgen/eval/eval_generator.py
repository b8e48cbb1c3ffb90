"""`mmgen eval-generator`: the text-to-image pipeline's accuracy, read by the scene judge; prints tables, writes JSON.

    mmgen eval-generator --model assets/mmgen-base --out eval/generator.json
    mmgen eval-generator --model assets/mmgen-base --sweep --out eval/generator_sweep.json

Without --sweep: one image per held-out prompt at the pipeline's default settings (`mmgen.eval.prompts` says
which prompts), scored per attribute (`mmgen.eval.scoring`) against TARGETS, beside the tokenizer ceiling
(`mmgen.eval.ceiling`). With --sweep: the same measures for every setting asked for, on tuning prompts
(`mmgen.eval.sweep`), to choose the defaults. The model card is written from both JSON files.
"""

from __future__ import annotations

import argparse

import torch

from ..step_cache import check_threshold
from ..tokens import SHIPPED_DEFAULT
from ..vocabulary import Vocabulary
from . import count, write_results
from .accuracy import Sampling, evaluate
from .ceiling import format_ceiling, tokenizer_ceiling
from .prompts import HELDOUT_PROMPTS, TUNING_PROMPTS, PromptSets, warn_unless_shapes
from .report import TARGETS, format_extra_objects, format_shape_errors, format_table, strict_line, top_confusions
from .sweep import SWEEP_GUIDANCE, SWEEP_HEADER, SWEEP_SCHEDULERS, SweepGrid, sweep

__all__ = [  # re-exported names that callers read here (the model card, the CLI, tests)
    "TARGETS",
    "add_arguments",
    "evaluate",
    "format_ceiling",
    "guidance_interval",
    "main",
    "tokenizer_ceiling",
    "top_confusions",
]


def main(args: argparse.Namespace) -> dict:
    """The held-out evaluation, or with `args.sweep` the settings sweep; returns what it writes to `args.out`."""
    from ..pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(args.model)
    warn_unless_shapes(pipe, "eval-generator")
    if args.bf16:  # the held-out evaluation and the sweep alike
        pipe.set_autocast(torch.bfloat16)
    if args.sweep:
        return {"rows": main_sweep(pipe, args)}
    given = {"num_inference_steps": args.steps, "first_block_cache": args.first_block_cache}
    sampling = Sampling.defaults(pipe, **{k: v for k, v in given.items() if v is not None})
    prompts = PromptSets(args.n_single, args.n_two, args.n_reworded)
    results = evaluate(pipe, prompts, sampling, vocabulary=Vocabulary.for_pipeline(pipe))
    results["settings"] = {
        "model": str(args.model),
        "scheduler": type(pipe.scheduler).__name__,
        "steps": sampling.num_inference_steps,
        "guidance_scale": sampling.guidance_scale,
        "guidance_interval": sampling.guidance_interval,
        "codebook_snap": sampling.codebook_snap,
        "num_candidates": sampling.num_candidates,
        "autocast": "bf16" if args.bf16 else "float32",
        "first_block_cache": sampling.first_block_cache,
    }
    results["tokenizer_ceiling"] = tokenizer_ceiling(pipe, n_single=args.n_single, n_two=args.n_two)
    skip = ("settings", "shape_errors", "extra_objects", "tokenizer_ceiling", "strict_judge")
    print(format_table({k: v for k, v in results.items() if k not in skip}))
    print(strict_line(results.get("strict_judge", {})))
    if "shape_errors" in results:
        print(format_shape_errors(results["shape_errors"]))
    if "extra_objects" in results:
        print(format_extra_objects(results["extra_objects"]))
    if results["tokenizer_ceiling"]:
        print(format_ceiling(results["tokenizer_ceiling"]))
    write_results(results, args.out)
    return results


def main_sweep(pipe, args: argparse.Namespace) -> list[dict]:
    """The sweep that the --sweep-* arguments ask for; writes its rows to `args.out` and returns them."""
    intervals = args.sweep_guidance_interval
    grid = SweepGrid(
        schedulers=tuple(args.sweep_schedulers),
        guidance_scales=tuple(args.sweep_guidance),
        codebook_snaps=tuple(args.sweep_codebook_snap),
        guidance_intervals=None if intervals is None else tuple(intervals),
        num_candidates=tuple(args.sweep_candidates or (None,)),
        steps=args.steps,
        first_block_cache=args.first_block_cache,
    )
    prompts = PromptSets.tuning(args.sweep_n_single, args.sweep_n_two, args.sweep_free, args.sweep_n_reworded)
    print(SWEEP_HEADER)
    rows = sweep(pipe, grid, prompts, Vocabulary.for_pipeline(pipe))
    cache = Sampling.defaults(pipe).first_block_cache if args.first_block_cache is None else args.first_block_cache
    autocast = "bf16" if pipe.autocast_dtype is not None else "float32"  # as the held-out results' settings say
    meta = {"model": str(args.model), "prompt_seed": prompts.seed, "first_block_cache": cache, "autocast": autocast}
    write_results(meta | {"rows": rows}, args.out)
    return rows


CACHE_HELP = (
    "skip the DiT's blocks after the first on steps where its first block's output moved by under T, relative "
    "(mmgen/step_cache.py; 0.2: about 0.65x the time, docs/speed.md); 0: off; default: the model's own (off for "
    "every shipped model)"
)


def cache_threshold(text: str) -> float:
    """`--first-block-cache T` -> T, with an error argparse shows as it is."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 0 (off) or a number between 0 and 1 such as 0.2, got {text!r}"
        ) from None
    try:
        return check_threshold(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def guidance_interval(text: str) -> tuple[float, float] | None:
    """`LOW,HIGH` on the command line -> (low, high) timesteps, `all` -> None (guide every step), with an error
    argparse shows as it is."""
    if text.strip().lower() == "all":
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH timesteps such as 250,999 or all, got {text!r}") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"need 0 <= LOW <= HIGH, got {text!r}")
    return low, high


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default=SHIPPED_DEFAULT, help="model folder, shipped name or Hub id")
    held_out = HELDOUT_PROMPTS
    p.add_argument("--n-single", type=count(0), default=held_out.n_single, help="held-out single-object prompts")
    p.add_argument("--n-two", type=count(0), default=held_out.n_two, help="held-out two-object prompts")
    p.add_argument(
        "--n-reworded",
        type=count(0),
        default=held_out.n_reworded,
        help="held-out reworded prompts",
    )
    p.add_argument("--steps", type=count(1), help="override the pipeline's default number of steps (sweep too)")
    p.add_argument("--bf16", action="store_true", help="the optional bf16 autocast path (pipe.set_autocast)")
    p.add_argument("--first-block-cache", type=cache_threshold, metavar="T", help=CACHE_HELP + " (sweep too)")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="accuracy of every scheduler x guidance x codebook_snap below, on tuning prompts",
    )
    p.add_argument(
        "--sweep-schedulers",
        nargs="+",
        default=list(SWEEP_SCHEDULERS),
        choices=SWEEP_SCHEDULERS,
        metavar="NAME",
        help="schedulers the sweep tries",
    )
    p.add_argument(
        "--sweep-guidance", nargs="+", type=float, default=list(SWEEP_GUIDANCE), metavar="G", help="guidance scales"
    )
    p.add_argument(
        "--sweep-codebook-snap",
        nargs="+",
        type=float,
        default=[0.0],
        metavar="S",
        help="codebook snap values to sweep (how far each step's x0 guess moves to its nearest codes; default 0: "
        "the samplers alone, the snap then swept at the chosen sampler)",
    )
    p.add_argument(
        "--sweep-n-single", type=count(1), default=TUNING_PROMPTS.n_single, help="single-object tuning prompts"
    )
    p.add_argument(
        "--sweep-n-two", type=count(1), default=TUNING_PROMPTS.n_two, help="two-object tuning prompts per setting"
    )
    p.add_argument(
        "--sweep-n-reworded", type=count(0), default=0, help="single-object tuning prompts in reworded phrasings"
    )
    p.add_argument(
        "--sweep-free",
        action="store_true",
        help="also count each setting's cells over 16 seeds for prompts that leave them free",
    )
    p.add_argument(
        "--sweep-guidance-interval",
        nargs="+",
        type=guidance_interval,
        metavar="LOW,HIGH",
        help="also sweep these (timesteps 0..999 to guide in, or 'all' for every step; default: the "
        "pipeline's default interval)",
    )
    p.add_argument(
        "--sweep-candidates",
        nargs="+",
        type=int,
        metavar="N",
        help="also sweep num_candidates (best-of-N starting noise; default: the pipeline's)",
    )
    p.add_argument("--out", help="results JSON (default eval/generator.json; with --sweep, eval/generator_sweep.json)")
    return p
