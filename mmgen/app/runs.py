"""A generation run in the explorer, shared by the Generate tab and the Trajectory tab's step mode: the controls'
values checked into `SamplingSettings` (the library's one check), a step-by-step run started from them, and what
a finished run leaves behind (`FinishedRun`: the image, its tokens, every step drawn, its run card)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr
import PIL.Image
import torch

from ..callbacks import TrajectoryRecorder
from ..denoising import DenoisingRun
from ..run_card import make_run_card
from ..settings import DEFAULT_GUIDANCE_INTERVAL, MAX_SEED, SamplingSettings
from ..viz import cell_size, code_histogram, step_bars, upscale_nearest
from .context import DISPLAY_SIDE, MAX_APP_CANDIDATES, MAX_STEPS, AppContext


@dataclass
class FinishedRun:
    """The last finished run of a session: what the Trajectory tab scrubs, branches from and exports."""

    image: PIL.Image.Image
    tokens: torch.Tensor  # (h, w) its exact token grid
    frames: list[dict]  # every step, drawn (`TrajectoryRecorder.render_step`)
    card: dict  # the run card (mmgen.run_card)
    settings: SamplingSettings
    latents: list[torch.Tensor]  # (1, C, h, w) x_t after each step: where a branch starts


def checked(settings: SamplingSettings) -> SamplingSettings:
    """`settings` through the library's check with the app's limits; its message as a gradio error."""
    try:
        return settings.checked(max_steps=MAX_STEPS, max_candidates=MAX_APP_CANDIDATES)
    except ValueError as e:
        raise gr.Error(str(e)) from e


def settings_from_controls(
    prompt: str,
    steps: float,
    guidance: float,
    seed: float | None,
    random_seed: bool,
    scheduler: str,
    snap: float,
    candidates: float,
) -> SamplingSettings:
    """The Generate tab's controls as checked settings; a random seed is drawn here when asked for (or none)."""
    if random_seed or seed is None:
        seed = random.randint(0, MAX_SEED)
    settings = SamplingSettings(prompt, steps, guidance, DEFAULT_GUIDANCE_INTERVAL, snap, candidates, seed, scheduler)
    return checked(settings)


def start_run(ctx: AppContext, settings: SamplingSettings) -> DenoisingRun:
    """A step-by-step run of `settings` on its own scheduler (with candidates, the noise is chosen first)."""
    try:
        pipe = ctx.pipe.with_scheduler(settings.scheduler)
        return pipe.stepwise(**settings.pipeline_kwargs(), generator=settings.generator())
    except ValueError as e:
        raise gr.Error(str(e)) from e


def finish_run(
    ctx: AppContext, run: DenoisingRun, recorder: TrajectoryRecorder, settings: SamplingSettings, seconds: float
) -> tuple[FinishedRun, str]:
    """Everything a finished run shows: image, tokens, run card, the trajectory's frames, and an info line."""
    out = run.result()
    tokens = out.tokens[0]
    finished = FinishedRun(
        image=out.images[0],
        tokens=tokens,
        frames=recorder.render(run.pipe, cell=cell_size(tokens.shape, target=DISPLAY_SIDE)),
        card=make_run_card(settings, ctx.model_name, dict(run.scheduler.config)),
        settings=settings,
        latents=[s.latents for s in recorder.steps],
    )
    used = int((code_histogram(tokens, ctx.num_codes) > 0).sum())
    h, w = tokens.shape
    s = settings
    best_of = f", best of {s.num_candidates} noises" if s.num_candidates > 1 else ""
    info = (
        f"{s.num_inference_steps} steps of {s.scheduler}, guidance {s.guidance_scale:g}, codebook snap "
        f"{s.codebook_snap:g}{best_of}, seed {s.seed} · {seconds:.2f} s · {h}×{w} tokens, {used} distinct codes"
    )
    return finished, info


def frame_view(frames: list[dict], k: int, grid_side: int) -> tuple:
    """Step k of a finished run, for the Trajectory tab's views: x_t, x0, its tokens, the changed tokens, the
    changes-per-step plot and an info line."""
    f = frames[k]
    counts = [fr["n_changed"] for fr in frames]
    info = (
        f"**Step {k + 1} of {len(frames)}** (timestep {f['timestep']:.0f}) · {f['n_changed']} of "
        f"{grid_side * grid_side} tokens changed since the previous step"
    )
    x_t, x0 = (upscale_nearest(f[key], DISPLAY_SIDE) for key in ("x_t", "x0"))
    return x_t, x0, f["tokens"], f["changed"], step_bars(counts, current=k), info
