"""Judge-scored accuracy of the text-to-image pipeline on a draw of prompt sets (`mmgen.eval.prompts`).

One image per prompt, read back by the scene judge (`mmgen.eval.judge`) and scored by `mmgen.eval.scoring`.
Both the held-out evaluation and the settings sweep measure through `evaluate`; they differ only in the prompts
they draw and the sampling settings they pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from PIL import Image

from ..data.shapes import cell_of
from ..settings import model_sampling_defaults
from ..vocabulary import Vocabulary
from .judge import read_scene
from .prompts import FREE_SEEDS, HELDOUT_PROMPTS, PromptSets
from .scoring import extra_objects, mean_scores, score_single, score_two, shape_errors


@dataclass(frozen=True)
class Sampling:
    """The sampling arguments of one pipeline call (`MMGenPipeline.__call__`'s names and units)."""

    num_inference_steps: int
    guidance_scale: float
    guidance_interval: tuple[float, float] | None  # training timesteps (0..999) to guide in; None: every step
    codebook_snap: float  # 0: off, 1: each step's x0 estimate moved onto its codes
    num_candidates: int  # best-of-N starting noise
    first_block_cache: float = 0.0  # the first-block cache threshold (mmgen/step_cache.py); 0: off

    @classmethod
    def defaults(cls, pipe=None, **changes) -> Sampling:
        """`pipe`'s defaults (its model's own where the model sets them: `MMGenPipeline.sampling_defaults`; no
        pipe: mmgen.settings'), with `changes` made."""
        values = model_sampling_defaults() if pipe is None else pipe.sampling_defaults
        return dataclasses.replace(cls(**values), **changes)

    def call_kwargs(self) -> dict:
        return dataclasses.asdict(self)


def generate(
    pipe, prompts: list[str], seeds: list[int], *, sampling: Sampling | None = None, batch_size: int = 16
) -> list[Image.Image]:
    """One image per prompt, each from its own seeded generator, `batch_size` prompts per pipeline call."""
    kwargs = {} if sampling is None else sampling.call_kwargs()
    images = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch_size]]
        images += pipe(prompts[i : i + batch_size], generator=gens, **kwargs).images
    return images


def evaluate(
    pipe,
    prompts: PromptSets = HELDOUT_PROMPTS,
    sampling: Sampling | None = None,
    batch_size: int = 16,
    vocabulary: Vocabulary | None = None,
) -> dict:
    """Judge-scored accuracy per prompt set: {"single", "paraphrased", "two" (and, given the model's `vocabulary`,
    "paraphrased_known_words"): share right per measure and "n";
    "shape_errors"; "extra_objects"; "free": distinct cells per free prompt and their "min"; "paraphrase_gap";
    "strict_judge": the sets' shares again, read by the strict judge (a shape no spec shape fits is wrong)}
    (a set with no prompts is left out). `sampling` None: the pipeline's defaults are what is measured."""
    pipe.set_progress_bar_config(disable=True)
    results, pairs, strict = {}, {}, {}  # pairs: (read scene, prompt item) per set, for shape_errors
    scorers = {"single": score_single, "paraphrased": score_single, "two": score_two}
    scorers["paraphrased_known_words"] = score_single
    for name, items in with_known_words(pipe, prompts.draw(), vocabulary).items():
        if not items:
            continue
        seeds = list(range(len(items)))
        images = generate(pipe, [it["prompt"] for it in items], seeds, sampling=sampling, batch_size=batch_size)
        pairs[name] = [(read_scene(im), it) for im, it in zip(images, items)]
        results[name] = mean_scores(pairs[name], scorers[name])
        strict_pairs = [(read_scene(im, strict=True), it) for im, it in zip(images, items)]  # the same images
        strict[name] = mean_scores(strict_pairs, scorers[name])
    if "single" in pairs:
        results["shape_errors"] = shape_errors(pairs["single"], pairs.get("two", []))
    if pairs:
        results["extra_objects"] = {name: extra_objects(p) for name, p in pairs.items()}
    if prompts.free:
        cells = {prompt: free_cells(pipe, prompt, sampling=sampling, batch_size=batch_size) for prompt in prompts.free}
        results["free"] = {"distinct_cells_over_16_seeds": cells, "min": min(cells.values())}
    if "single" in results and "paraphrased" in results:
        results["paraphrase_gap"] = {"all": results["single"]["all"] - results["paraphrased"]["all"]}
    if strict:
        results["strict_judge"] = strict
    return results


def with_known_words(pipe, sets: dict[str, list], vocabulary: Vocabulary | None) -> dict[str, list]:
    """`sets` and, given the model's `vocabulary`, "paraphrased_known_words": the reworded prompts in its training
    words (`Vocabulary.in_known_words`, what `mmgen generate --known-words` draws), with the same seeds."""
    if vocabulary is None or not sets.get("paraphrased"):
        return sets
    encoder = (pipe.tokenizer, pipe.text_encoder)
    known = [{**it, "prompt": vocabulary.in_known_words(it["prompt"], encoder)} for it in sets["paraphrased"]]
    return {**sets, "paraphrased_known_words": known}


def free_cells(pipe, prompt: str, *, sampling: Sampling | None = None, batch_size: int = 16) -> int:
    """How many distinct cells (of 9) the largest object takes over FREE_SEEDS seeds of a prompt that leaves its
    place free: a measure of variety."""
    images = generate(pipe, [prompt] * FREE_SEEDS, list(range(FREE_SEEDS)), sampling=sampling, batch_size=batch_size)
    reads = [read_scene(im) for im in images]
    return len({cell_of(o["position"]) for r in reads for o in r["objects"][:1]})
