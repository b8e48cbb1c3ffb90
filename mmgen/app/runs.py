"""A generation run in the explorer, shared by the Generate tab and the Trajectory tab's step mode: the controls'
values checked into `SamplingSettings` (the library's one check, with the app's limits), a step-by-step run
started from them on the model thread, and what a finished run leaves behind (`FinishedRun`: the image, its
tokens, its compact trajectory, its run card)."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr
import PIL.Image
import torch

from ..run_card import make_run_card, scheduler_config_of
from ..settings import DEFAULT_GUIDANCE_INTERVAL, MAX_SEED, SamplingSettings
from ..viz import code_histogram
from .context import AppContext
from .frames import Trajectory

if TYPE_CHECKING:  # the page is served before diffusers is imported (app.py)
    from ..denoising import DenoisingRun, StepOutput

CONTROL_FIELDS = (  # the SamplingSettings field each sampling control sets, in /generate's input order
    "prompt",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    None,  # random seed
    "scheduler",
    "codebook_snap",
    "num_candidates",
)


@dataclass(eq=False)
class FinishedRun:
    """The last finished run of a session: what the Trajectory tab scrubs, branches from and exports. Small by
    design (about 18 kB a step): frames are drawn when shown (`frames.FrameDrawer`)."""

    image: PIL.Image.Image
    tokens: torch.Tensor  # (h, w) its exact token grid
    trajectory: Trajectory
    card: dict  # the run card (mmgen.run_card)
    settings: SamplingSettings


def controls_settings(
    prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates, draw_seed: bool = True
) -> SamplingSettings:
    """The Generate tab's controls as (unchecked) settings; a random seed is drawn when asked for or missing
    (`draw_seed=False`: seed 0 stands in, for checks made before the run)."""
    if random_seed or seed is None:
        seed = random.randint(0, MAX_SEED) if draw_seed else 0
    return SamplingSettings(prompt, steps, guidance, DEFAULT_GUIDANCE_INTERVAL, snap, candidates, seed, scheduler)


def checked(ctx: AppContext, settings: SamplingSettings) -> SamplingSettings:
    """`settings` through the app's one check (`Limits.check_sampling`); its message as a gradio error."""
    try:
        return ctx.limits.check_sampling(settings)
    except ValueError as e:
        raise gr.Error(str(e)) from e


def settings_from_controls(ctx: AppContext, *controls) -> SamplingSettings:
    """The Generate tab's controls (in /generate's order) as checked settings, with the model's own first-block
    cache (no control: a speed setting the model chose, recorded in the run card)."""
    cache = ctx.facts.sampling["first_block_cache"]
    return checked(ctx, dataclasses.replace(controls_settings(*controls), first_block_cache=cache))


def refused_controls(ctx: AppContext, *controls) -> tuple[int, str] | None:
    """For a validator: (index of the control, message) when the controls would be refused, else None. With the
    model loaded, a step count its scheduler would refuse too (one that starts far from pure noise)."""
    settings = controls_settings(*controls[: len(CONTROL_FIELDS)], draw_seed=False)
    error = ctx.limits.field_error(settings)
    loaded = ctx.loading.done() and ctx.loading.future.exception() is None
    if error is None and loaded and settings.num_inference_steps is not None:
        from ..denoising import set_schedule  # diffusers: imported by now (the model has loaded)

        try:
            set_schedule(ctx.pipe.with_scheduler(settings.scheduler).scheduler, settings.num_inference_steps)
        except ValueError as e:
            error = "num_inference_steps", str(e)
    return None if error is None else (CONTROL_FIELDS.index(error[0]), error[1])


def start_run(ctx: AppContext, settings: SamplingSettings) -> DenoisingRun:
    """A step-by-step run of `settings` on its own scheduler (with candidates, the noise is chosen first, on the
    model thread)."""
    pipe = ctx.pipe.with_scheduler(settings.scheduler)
    return ctx.compute(pipe.stepwise, **settings.pipeline_kwargs(), generator=settings.generator())


def guided_down_to(settings: SamplingSettings) -> float:
    """The lowest timestep `settings` guide at: 0 when every step is guided, or none is (guidance 1 or less)."""
    return settings.guidance_interval[0] if settings.guidance_interval and settings.guidance_scale > 1 else 0.0


def new_trajectory(settings: SamplingSettings) -> Trajectory:
    """An empty trajectory for a run of `settings`, which knows where its guidance stops."""
    return Trajectory(settings.prompt, guided_down_to=guided_down_to(settings))


def advance(ctx: AppContext, run: DenoisingRun, trajectory: Trajectory) -> StepOutput:
    """One step of `run`, recorded in `trajectory` (each word's attention is found from it when shown), on the
    model thread."""

    def step():
        out = run.step()
        noise = run.extra_step_kwargs.get("generator")  # the sampler's, when it draws noise as it steps
        trajectory.record(run.pipe, out, run.model_input, noise[0] if isinstance(noise, list) else noise)
        return out

    return ctx.compute(step)


def finish_run(
    ctx: AppContext, run: DenoisingRun, trajectory: Trajectory, settings: SamplingSettings, seconds: float
) -> tuple[FinishedRun, str]:
    """What a finished run shows: image, tokens, run card, its trajectory, and an info line."""
    out = ctx.compute(run.result)
    tokens = out.tokens[0]
    matmuls = "bf16" if run.pipe.autocast_dtype is not None else "float32"  # what ran
    card = make_run_card(settings, ctx.model_name, scheduler_config_of(run.scheduler), matmuls)
    finished = FinishedRun(out.images[0], tokens, trajectory, card, settings)
    used = int((code_histogram(tokens, ctx.num_codes) > 0).sum())
    h, w = tokens.shape
    s = settings
    best_of = f", best of {s.num_candidates} noises" if s.num_candidates > 1 else ""
    steps = f"{s.num_inference_steps} step" + "s" * (s.num_inference_steps != 1)
    cache = run.step_cache
    skipped = (
        f", {cache.skipped} of {cache.skipped + cache.computed} steps from the first-block cache" if cache else ""
    )
    low = guided_down_to(s)
    guided = f"guidance {s.guidance_scale:g}" + (f" at t ≥ {low:g}" if low > 0 else "")
    info = (
        f"{steps} of {s.scheduler or ctx.scheduler_label()}, {guided}, codebook snap "
        f"{s.codebook_snap:g}{best_of}{skipped}, seed {s.seed} · {seconds:.2f} s · {w}×{h} tokens, "
        f"{used} distinct codes"
    )
    return finished, info
