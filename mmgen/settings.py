"""Sampling settings: the defaults, the bounds, and the one check that every entry point calls.

The pipeline (`MMGenPipeline.check_inputs`), the command line, the app's controls and API, and run cards all
validate through `check_sampling` (or `SamplingSettings.checked`, which also normalises types), so a value is
accepted or refused with the same message wherever it comes from. An entry point with tighter limits (the app's
sliders) passes its own maxima; it never re-implements the check.

The DEFAULT_* values below are the library's; a model may set its own (`model_sampling_defaults`, read by
`MMGenPipeline.sampling_defaults`), which a call's left-out settings then take:

    settings = SamplingSettings.of_model(pipe.sampling_defaults, "a red circle", num_inference_steps=20).checked()
    out = pipe(**settings.pipeline_kwargs(), generator=settings.generator())
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .step_cache import check_threshold

# Defaults of every entry point, chosen by measured accuracy on tuning prompts (`mmgen eval-generator --sweep`;
# docs/history.md says how).
DEFAULT_STEPS = 50  # 30 beat 20, and 50 beat 30 and 75 for mmgen-base (docs/generator-runs.md, run 7)
DEFAULT_GUIDANCE_SCALE = 4.0
DEFAULT_GUIDANCE_INTERVAL = (250.0, 999.0)  # leave the last steps (t < 250) unguided: small shapes keep their colour
DEFAULT_CODEBOOK_SNAP = 0.5  # pull each step's x0 estimate halfway to its codes
DEFAULT_NUM_CANDIDATES = 4  # best-of-4 starting noise (mmgen/candidates.py)
DEFAULT_FIRST_BLOCK_CACHE = 0.0  # off; a model may turn it on for itself (no shipped one does: docs/speed.md)

# The samplers by short name (command line, app) -> diffusers class name; `mmgen.pipeline.SCHEDULERS` holds the
# classes. Names here keep the app's page free of diffusers. A name added here reaches the command line, the app's
# dropdown, run cards (`scheduler_short_name`: one name a class) and the sweep's default grid; it must call the model
# once a step (Heun's two calls a step run from the start only). OTHER_SCHEDULERS run through from_config (a model
# may come with one); the rest are refused (`mmgen.denoising.set_schedule`).
SCHEDULER_CLASSES = {
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "ddpm": "DDPMScheduler",
}
# Read right too (their x0 estimate checked against the scheduler's own: tests/test_pipeline_api.py): a pipeline's
# scheduler may be one of these, or a subclass of any allowed one.
OTHER_SCHEDULERS = (
    "DEISMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
)


def multistep(scheduler) -> bool:
    """Whether a scheduler keeps a history of earlier steps: DPM++, UniPC, DEIS (a `solver_order` over 1), LMS and
    PNDM. The key in another scheduler's config file does not count (mmgen-base's Euler ancestral carries a
    leftover one); a subclass's own `__init__(**kwargs)` does not hide its parent's."""
    classes = type(scheduler).__mro__
    if any(c.__name__ in ("LMSDiscreteScheduler", "PNDMScheduler") for c in classes):
        return True
    takes = any("solver_order" in inspect.signature(c.__init__).parameters for c in classes if "__init__" in vars(c))
    return takes and scheduler.config.get("solver_order", 1) > 1


def scheduler_short_name(class_name: str | None) -> str | None:
    """The short name of a diffusers scheduler class ("EulerDiscreteScheduler" -> "euler"); None for the classes
    that have none (OTHER_SCHEDULERS: a model may come with one, and samples with it as its own)."""
    return next((short for short, cls in SCHEDULER_CLASSES.items() if cls == class_name), None)


# What a model folder may set for itself (model_index.json's `sampling_defaults`, written from its recipe's
# [sampling] table): a model tuned at other settings than the defaults above samples at its own.
MODEL_SAMPLING_KEYS = ("num_inference_steps", "guidance_scale", "codebook_snap", "num_candidates", "first_block_cache")

MAX_STEPS = 1000  # the training schedule's length
MAX_CANDIDATES = 16
MAX_IMAGES_PER_CALL = 1024  # images per prompt in one call: far more than any memory holds
MAX_PROMPT_CHARS = 2000  # longer input is certainly not a caption: refused rather than tokenised
MAX_SEED = 2**31 - 1


def check_prompt(prompt) -> str:
    """The prompt, stripped; ValueError when it is not text, empty or too long."""
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"A prompt must be text, got {type(prompt).__name__} {str(prompt)[:40]!r}.")
    if prompt is None or not prompt.strip():
        raise ValueError("Type a prompt first: it is empty (e.g. 'a red circle on a white background').")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"The prompt has {len(prompt)} characters: too long (at most {MAX_PROMPT_CHARS}).")
    if not is_utf8(prompt):  # a terminal in another encoding hands Python undecodable bytes as lone surrogates
        raise ValueError("The prompt holds bytes that are not UTF-8 text: type it in a UTF-8 terminal.")
    return prompt.strip()


def is_utf8(text: str) -> bool:
    """Whether `text` can be written as UTF-8: not with a lone surrogate (undecodable bytes a terminal handed over,
    or JSON's "\ud800", half an emoji cut by a script)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _whole(value, name: str, low: int, high: int) -> int:
    whole = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)  # numpy's too
    if not whole or value != int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}, got {value!r}.")
    return int(value)


def _number(value, name: str, low: float, high: float, hint: str = "") -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        shown = f"{low:g}..{high:g}" if math.isfinite(high) else f">= {low:g}"
        raise ValueError(f"{name} must be a number {shown}{hint}, got {value!r}.")
    return float(value)


def negative_prompts(negative, n: int) -> list[str]:
    """The negative prompt of each of `n` prompts: None or "" is the null condition (the empty prompt), a text
    goes with every prompt, a list gives one per prompt (as in diffusers); ValueError otherwise."""
    texts = [negative or ""] * n if negative is None or isinstance(negative, str) else negative
    if not isinstance(texts, list | tuple) or len(texts) != n or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"`negative_prompt` must be a text or a list of {n} texts (one per prompt), got {negative!r}")
    if longest := max((len(t) for t in texts if len(t) > MAX_PROMPT_CHARS), default=0):
        raise ValueError(f"The negative prompt has {longest} characters: too long (at most {MAX_PROMPT_CHARS}).")
    return list(texts)


def check_batch(n_prompts: int, num_images_per_prompt, generator=None) -> int:
    """The batch size of a call (prompts x images per prompt); ValueError for a count that is not a whole number
    from 1, or a list of generators that is not one per image."""
    batch = n_prompts * _whole(num_images_per_prompt, "`num_images_per_prompt`", 1, MAX_IMAGES_PER_CALL)
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for a batch of {batch} images (one per image)")
    given = generator if isinstance(generator, list) else [generator]
    if not all(g is None or isinstance(g, torch.Generator) for g in given):
        odd = next(g for g in given if not (g is None or isinstance(g, torch.Generator)))
        raise ValueError(
            f"`generator` must be a torch.Generator (or a list, one per image), got {type(odd).__name__}: for a "
            "seed, torch.Generator().manual_seed(seed)"
        )
    return batch


LAST_TIMESTEP = 999  # the noisiest of the 1,000 training timesteps every mmgen DiT is trained with


def check_interval(interval) -> tuple[float, float] | None:
    """(low, high) training timesteps with 0 <= low <= high, or None (guide every step)."""
    if interval is None:
        return None
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ValueError(
            f"The guidance interval must be (low, high) timesteps with 0 <= low <= high, or none; got {interval!r}."
        )
    if low > LAST_TIMESTEP:  # no step would be guided: guidance off, unsaid
        raise ValueError(
            f"The guidance interval starts past the last timestep ({LAST_TIMESTEP}), so no step would be guided; got "
            f"{interval!r}. To turn guidance off, set the guidance scale to 1."
        )
    return low, high


class CheckedSampling(NamedTuple):
    """The numeric sampling settings, checked: `MMGenPipeline.__call__`'s names (the first-block cache aside)."""

    num_inference_steps: int
    guidance_scale: float
    guidance_interval: tuple[float, float] | None
    codebook_snap: float
    num_candidates: int


def check_sampling(
    num_inference_steps,
    guidance_scale,
    guidance_interval=None,
    codebook_snap=0.0,
    num_candidates=1,
    max_steps: int = MAX_STEPS,
    max_candidates: int = MAX_CANDIDATES,
) -> CheckedSampling:
    """The numeric settings, checked and normalised; ValueError with a message for people when one is out of bounds
    (NaN and infinity included)."""
    return CheckedSampling(
        _whole(num_inference_steps, "Steps", 1, max_steps),
        _number(guidance_scale, "Guidance", 0.0, math.inf),
        check_interval(guidance_interval),
        _number(codebook_snap, "Codebook snap", 0.0, 1.0, " (0: off, 1: onto the codes)"),
        _whole(num_candidates, "Candidates", 1, max_candidates),
    )


def model_sampling_defaults(model_defaults: Mapping | None = None) -> dict:
    """The default sampling arguments of a model, by `MMGenPipeline.__call__`'s names: the defaults above, with
    what the model sets for itself (`model_defaults`, keys of MODEL_SAMPLING_KEYS) in their place. ValueError for
    a key a model cannot set or a value out of bounds."""
    if model_defaults is None:
        model_defaults = {}
    if not isinstance(model_defaults, Mapping):
        raise ValueError(f"A model's sampling defaults must be a table of settings, got {model_defaults!r}.")
    unknown = sorted(set(model_defaults) - set(MODEL_SAMPLING_KEYS))
    if unknown:
        raise ValueError(f"A model's sampling defaults can set {', '.join(MODEL_SAMPLING_KEYS)}; not {unknown}.")
    values = {
        "num_inference_steps": DEFAULT_STEPS,
        "guidance_scale": DEFAULT_GUIDANCE_SCALE,
        "guidance_interval": DEFAULT_GUIDANCE_INTERVAL,
        "codebook_snap": DEFAULT_CODEBOOK_SNAP,
        "num_candidates": DEFAULT_NUM_CANDIDATES,
    } | dict(model_defaults)
    cache = check_threshold(values.pop("first_block_cache", DEFAULT_FIRST_BLOCK_CACHE))
    return check_sampling(**values)._asdict() | {"first_block_cache": cache}


@dataclass(frozen=True)
class SamplingSettings:
    """Everything that decides a generated image besides the model: what a run card records."""

    prompt: str
    num_inference_steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    guidance_interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL
    codebook_snap: float = DEFAULT_CODEBOOK_SNAP
    num_candidates: int = DEFAULT_NUM_CANDIDATES
    seed: int = 0
    scheduler: str | None = None  # a short name (mmgen.pipeline.SCHEDULERS); None: the model's own
    first_block_cache: float = DEFAULT_FIRST_BLOCK_CACHE  # 0: off (mmgen/step_cache.py)

    @classmethod
    def of_model(cls, model_defaults: Mapping, prompt: str, **given) -> SamplingSettings:
        """Settings with the `given` values and the model's defaults (`model_sampling_defaults`) for the rest; a
        MODEL_SAMPLING_KEYS value of None counts as not given."""
        given = {k: v for k, v in given.items() if not (k in MODEL_SAMPLING_KEYS and v is None)}
        return cls(prompt=prompt, **{k: v for k, v in model_defaults.items() if k not in given}, **given)

    def checked(self, max_steps: int = MAX_STEPS, max_candidates: int = MAX_CANDIDATES) -> SamplingSettings:
        """A copy with every field checked and of its proper type; ValueError with a message for people."""
        checked = check_sampling(
            self.num_inference_steps,
            self.guidance_scale,
            self.guidance_interval,
            self.codebook_snap,
            self.num_candidates,
            max_steps,
            max_candidates,
        )
        # SCHEDULER_CLASSES, not the pipeline's SCHEDULERS: the app checks a visitor's settings while the model may
        # still be loading, and importing diffusers on two threads at once breaks its lazy imports for good
        if self.scheduler is not None and self.scheduler not in SCHEDULER_CLASSES:
            raise ValueError(f"Unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULER_CLASSES)}.")
        return dataclasses.replace(
            self,
            prompt=check_prompt(self.prompt),
            **checked._asdict(),
            seed=_whole(self.seed, "The seed", 0, MAX_SEED),
            first_block_cache=check_threshold(self.first_block_cache),
        )

    def pipeline_kwargs(self) -> dict:
        """The keyword arguments of `MMGenPipeline.__call__` / `stepwise` these settings stand for (no generator:
        see `generator()`; the scheduler is chosen with `pipe.with_scheduler(settings.scheduler)`)."""
        return {
            "prompt": self.prompt,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "guidance_interval": self.guidance_interval,
            "codebook_snap": self.codebook_snap,
            "num_candidates": self.num_candidates,
            "first_block_cache": self.first_block_cache,
        }

    def generator(self, device: str | torch.device = "cpu") -> torch.Generator:
        """A fresh generator seeded with `seed`: the same settings always draw the same noise."""
        return torch.Generator(device=device).manual_seed(self.seed)
