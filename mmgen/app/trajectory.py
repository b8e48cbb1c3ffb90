"""The Trajectory tab: every step of the session's last run (the noisy latent x_t, the model's guess of the clean
image x0, its tokens, the tokens that changed, where each word of the prompt is read: `word_attention`),
scrubbed with a slider or played; a step mode that runs the sampler one step per click; a branch that continues
the run from a step under other settings; exports."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr
import PIL.Image

from ..settings import MAX_SEED, SamplingSettings, check_prompt, multistep
from ..viz import filmstrip, save_gif, step_frames, upscale_nearest
from .context import DISPLAY_SIDE, WIDE_VIEW, AppContext
from .errors import handler
from .files import scratch_folder
from .frames import Trajectory
from .jobs import WAIT
from .limits import MAX_GUIDANCE
from .runs import (
    FinishedRun,
    advance,
    checked,
    finish_run,
    new_trajectory,
    refused_controls,
    settings_from_controls,
    start_run,
)
from .word_attention import WordAttentionView

if TYPE_CHECKING:  # the page is served before diffusers is imported (app.py)
    from ..denoising import DenoisingRun

PLAY_FRAME_S = 0.15
NO_RUN = "Generate an image first: its trajectory appears here"
TAB_LABEL = "Trajectory"
STEPPING = "the slider and the word maps stay the last finished run's until this run ends"  # step mode's note


@dataclass
class Stepper:
    """A run advanced one step per click (step mode), and the controls' values it was started from."""

    run: DenoisingRun
    trajectory: Trajectory
    key: tuple  # the controls' raw values: a change starts a new run
    settings: SamplingSettings
    t0: float


class TrajectoryTab:
    """The tab's components and handlers. `step` is moved by the Generate tab's runs too; `run_state` holds the
    session's last finished run (a `FinishedRun`).

    The views are drawn only while a visitor looks at the tab (`shown`): when it opens, and when a run finishes or
    the slider moves while it is open. A visitor who only generates costs no drawing, no decode and no replay of
    the DiT for the word attention. API clients draw a step with /show_step."""

    def __init__(self, ctx: AppContext, run_state: gr.State):
        self.ctx, self.run_state = ctx, run_state
        with gr.Tab(TAB_LABEL, id="trajectory"):
            # inside the tab, as every tab's states: between gr.Tabs and its tabs they shift gradio's tab order
            self.stepper_state = gr.State(None, time_to_live=ctx.limits.session_seconds)  # step mode: a `Stepper`
            self.shown = gr.State(False)  # whether this visitor has the tab open
            self.drawn_run = gr.State(None)  # the key of the run the tab drew last (`_draw`)
            gr.Markdown(
                "Every step of the last run: the noisy latent x_t in false colour (its channels projected on the"
                " codebook's 3 main axes), the model's guess of the clean image x0 (each cell"
                " snapped to its nearest code, then decoded: the decoder reads codes), that guess's tokens, and"
                " which tokens changed since the previous step. A token map gives each code a colour of its own (a"
                " colour names a code, not what it draws); the codebook holds many near-identical whites and grays"
                " (the Codebook tab's neighbours), and swaps between them are most of the late steps' changes,"
                " though the image does not change to the eye."
            )
            with gr.Row():
                self.prev_btn = gr.Button("◀ Previous", elem_id="prev", size="sm")
                self.play_btn = gr.Button("▶ Play", elem_id="play", size="sm")
                self.next_btn = gr.Button("Next ▶", elem_id="next", size="sm")
                self.step_btn = gr.Button(
                    "Step mode: run one step", variant="secondary", elem_id="step-once", size="sm"
                )
            # counted from 1, as every line under it ("Step 5 of 10"); the handlers' step index k is one less
            steps = max(min(ctx.facts.sampling["num_inference_steps"], ctx.limits.max_steps), 2)
            self.step = gr.Slider(1, steps, value=1, step=1, label="Step", elem_id="step")
            with gr.Row():
                x_t = gr.Image(label="x_t", interactive=False, elem_id="x-t")
                x0 = gr.Image(label="Predicted x0, snapped to its codes", interactive=False, elem_id="x0")
                x0_tokens = gr.Image(label="Its tokens (a colour per code)", interactive=False, elem_id="x0-tokens")
                changed = gr.Image(label="Changed since the last step", interactive=False, elem_id="changed")
            with gr.Row():
                change_plot = gr.Image(  # min_width: on a phone the step's line goes under the chart
                    label="Tokens changed per step", interactive=False, elem_id="change-plot", min_width=WIDE_VIEW
                )
                step_info = gr.Markdown(elem_id="step-info")
            self.views = [x_t, x0, x0_tokens, changed, change_plot, step_info]
            self.show_step_api = gr.Button(visible=False)  # /show_step's trigger: API clients only
            self.attention = WordAttentionView(ctx)
            self._build_branch()
            with gr.Row():
                self.gif_btn = gr.Button("Export GIF (x_t and x0)", size="sm", elem_id="export-gif")
                self.strip_btn = gr.Button("Export filmstrip PNG", size="sm", elem_id="export-strip")
                self.export_file = gr.File(label="Export", interactive=False, elem_id="export-file")

    def _build_branch(self) -> None:
        with gr.Accordion("Branch from this step", open=False):
            with gr.Row():
                self.branch_prompt = gr.Textbox(label="Prompt (empty: the same)", elem_id="branch-prompt")
                self.branch_guidance = gr.Slider(  # set to each run's own (`new_run_branch`)
                    1,
                    MAX_GUIDANCE,
                    value=min(max(self.ctx.facts.sampling["guidance_scale"], 1), MAX_GUIDANCE),
                    step=0.5,
                    label="Guidance (1: off)",
                    elem_id="branch-guidance",
                )
                self.branch_seed = gr.Number(
                    value=None,
                    precision=0,
                    minimum=0,
                    maximum=MAX_SEED,
                    label="Seed of the noise to come (empty: the run's own)",
                    elem_id="branch-seed",
                )
                self.branch_btn = gr.Button("Branch", elem_id="branch")
            with gr.Row():
                self.original_out = gr.Image(label="Original", interactive=False, elem_id="branch-original")
                self.branch_out = gr.Image(label="Branch", interactive=False, elem_id="branch-result")
            self.branch_info = gr.Markdown(elem_id="branch-info")

    def wire(self, controls: list[gr.components.Component], tabs: gr.Tabs) -> None:
        """The tab's events; step mode reads the Generate tab's sampling `controls` (in /generate's order), and
        `tabs` (the page's) tells when this tab opens or closes."""
        ctx, run, step, views = self.ctx, self.run_state, self.step, self.views
        word, drawn = self.attention.word, [*views, *self.attention.outputs, step, self.drawn_run]
        # preprocess=False: the attention's word is checked against the session's run, not the page's choices
        tabs.select(
            self.tab_selected,
            [run, step, word, self.drawn_run],
            [self.shown, *drawn],
            api_visibility="private",
            preprocess=False,
        )
        run.change(
            self.new_run,
            [run, step, word, self.shown, self.drawn_run],
            drawn,
            api_visibility="private",
            preprocess=False,
        )
        branched = [self.original_out, self.branch_out, self.branch_info, self.export_file]
        branch_settings = [self.branch_prompt, self.branch_guidance, self.branch_seed]
        run.change(self.new_run_branch, run, [*branched, *branch_settings], api_visibility="private")
        # no progress overlay: a played step redraws these views, which the overlay greyed out frame after frame
        step.change(
            self.show_step_if_shown, [run, step, self.shown], views, api_visibility="private", show_progress="hidden"
        )
        self.show_step_api.click(self.show_step, [run, step], views, api_name="show_step")
        # no progress overlay: with no run to scrub, the error left the slider a red "Error" pill until a run ended
        scrub = {"show_progress": "hidden"}
        self.prev_btn.click(
            self.previous_step, [run, step, self.stepper_state], step, api_name="previous_step", **scrub
        )
        self.next_btn.click(self.next_step, [run, step, self.stepper_state], step, api_name="next_step", **scrub)
        self.play_btn.click(
            self.play,
            run,
            [step, *views],
            api_name="play",
            show_progress="hidden",
            **ctx.jobs.wait_event("play", concurrency_limit=4),
        )
        self.step_btn.click(
            self.step_once,
            [*controls, self.stepper_state],
            [self.stepper_state, run, step, *views, self.attention.map, self.attention.strip, self.attention.info],
            api_name="step_once",
            **ctx.jobs.model_event(lambda *values: refused_controls(ctx, *values)),
        )
        self.branch_btn.click(
            self.branch,
            [run, step, self.branch_prompt, self.branch_guidance, self.branch_seed],
            [self.original_out, self.branch_out, self.branch_info],
            api_name="branch",
            **ctx.jobs.model_event(self.refused_branch, message_at=1),  # under the step (0: the run's state)
        )
        self.attention.wire(run, step, self.shown)
        exports = ctx.jobs.wait_event("export")
        self.gif_btn.click(self.export_gif, run, self.export_file, api_name="export_gif", **exports)
        self.strip_btn.click(self.export_filmstrip, run, self.export_file, api_name="export_filmstrip", **exports)

    @staticmethod
    def new_run_branch(run: FinishedRun | None) -> tuple:
        """A new run: the last run's branch pair, line and export cleared, and the branch's settings the run's own
        (the prompt and seed empty: the run's; its guidance), so a branch left as it is is the run again; the
        slider and seed kept the first run's (guidance 4, seed 1), the prompt the last one typed."""
        if not run:
            return None, None, "", None, gr.skip(), gr.skip(), gr.skip()
        return None, None, "", None, "", min(max(run.settings.guidance_scale, 1), MAX_GUIDANCE), None

    # ------------------------------------------------------------------ drawn when shown
    @handler
    def tab_selected(
        self, run: FinishedRun | None, k: float, word: str | None, drawn_run: int | None, event: gr.SelectData
    ) -> tuple:
        """A tab of the page was picked: whether it is this one and, if so, everything drawn."""
        if event.value != TAB_LABEL:
            return False, *self._skipped()
        return True, *self._draw(run, k, word, drawn_run)

    @handler
    def new_run(self, run: FinishedRun | None, k: float, word: str | None, shown: bool, drawn_run=None) -> tuple:
        """A run finished (or the session's run expired): drawn if the tab is open."""
        return self._draw(run, k, word, drawn_run) if shown else self._skipped()

    def _draw(self, run: FinishedRun | None, k: float, word: str | None, drawn_run: int | None) -> tuple:
        """The step views and the word attention at step k, the slider (moved only for a run not drawn before)
        and the drawn run's key, or a note when there is no run yet. A run not drawn before opens at its last
        step: the slider's value as sent may still be the last run's (a run scrubbed to step 10, then another
        generated: the tab drew 'Step 10 of 50' under a slider the run had moved to 50)."""
        if not run:
            nothing = *[None] * (len(self.views) - 1), f"{NO_RUN}."
            return *nothing, *self.attention.refresh(None, k, word), gr.skip(), None
        new = run.trajectory.key != drawn_run
        k = len(run.trajectory) - 1 if new else self._step(run, k, clamp=True)  # the index (the slider's - 1)
        slider = gr.Slider(maximum=max(k + 1, 2), value=k + 1) if new else gr.skip()
        views = self.ctx.frames.view(run.trajectory, k)
        return *views, *self.attention.refresh(run, k + 1, word), slider, run.trajectory.key

    def _skipped(self) -> tuple:
        return tuple(gr.skip() for _ in range(len(self.views) + len(self.attention.outputs) + 2))

    # ------------------------------------------------------------------ scrubbing (no model call but decoding)
    @handler
    def show_step(self, run: FinishedRun | None, k: float) -> tuple:
        """The trajectory at step k: x_t, predicted x0, its tokens, tokens changed since step k-1."""
        return self.ctx.frames.view(self._trajectory(run), self._step(run, k, clamp=True))

    @handler
    def show_step_if_shown(self, run: FinishedRun | None, k: float, shown: bool) -> tuple:
        """The slider moved: step k drawn if the tab is open (and there is a run)."""
        if not shown or not run:
            return tuple(gr.skip() for _ in self.views)
        return self.show_step(run, k)

    @handler
    def previous_step(self, run: FinishedRun | None, k: float, stepper: Stepper | None = None) -> int:
        return self._step(self._scrubbed(run, stepper), k, clamp=True, delta=-1) + 1

    @handler
    def next_step(self, run: FinishedRun | None, k: float, stepper: Stepper | None = None) -> int:
        return self._step(self._scrubbed(run, stepper), k, clamp=True, delta=+1) + 1

    @staticmethod
    def _scrubbed(run: FinishedRun | None, stepper: Stepper | None) -> FinishedRun:
        """The run the slider moves through; with none yet but a step-mode run under way, a message that says so
        (it said "Generate an image first" beside that run's frames)."""
        if not run and stepper is not None and not stepper.run.done:
            done, total = len(stepper.trajectory), stepper.run.num_steps
            raise gr.Error(
                f"Step mode's run is at step {done} of {total}: the slider and these buttons move through a finished "
                "run, this one once its last step is run (or Generate draws it whole)."
            )
        return run

    @handler
    def play(self, run: FinishedRun | None, request: gr.Request) -> Iterator[tuple]:
        """Animate the slider over every step (each frame drawn as it is shown)."""
        with self.ctx.jobs.job(request, WAIT) as deadline:  # one play or export per visitor at a time
            trajectory = self._trajectory(run)
            for k in range(len(trajectory)):
                deadline.beat()  # a play its visitor cancelled stops beating: its slot is free in a minute
                yield k + 1, *self.ctx.frames.view(trajectory, k)
                time.sleep(PLAY_FRAME_S)

    def _trajectory(self, run: FinishedRun | None) -> Trajectory:
        if not run:
            raise gr.Error(f"{NO_RUN} (a run is kept {self.ctx.limits.session_minutes:g} minutes after it is made).")
        return run.trajectory

    def _step(self, run: FinishedRun | None, k, clamp: bool = False, delta: int = 0) -> int:
        """The index (from 0) of step `k` of `run` as the slider counts (from 1), + delta: checked, a whole
        number in range, or clamped into it."""
        steps = len(self._trajectory(run))
        if isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k) or k != int(k):
            raise gr.Error(f"The step must be a whole number in 1..{steps}, got {k!r}.")
        k = int(k) + delta
        if not clamp and not 1 <= k <= steps:
            raise gr.Error(f"The step must be a whole number in 1..{steps}, got {k}.")
        return min(max(k, 1), steps) - 1

    # ------------------------------------------------------------------ step mode and branches
    @handler
    def step_once(
        self,
        prompt: str,
        steps: float,
        guidance: float,
        seed: float | None,
        random_seed: bool,
        scheduler: str,
        snap: float,
        candidates: float,
        stepper: Stepper | None,
        request: gr.Request,
    ) -> tuple:
        """Step mode: run the sampler one step per click. A new run starts when none is under way, the last one
        finished, or the settings changed; a finished run becomes the trajectory the slider scrubs."""
        ctx = self.ctx
        key = (prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates)
        with ctx.jobs.job(request):
            if stepper is None or stepper.run.done or stepper.key != key:
                settings = settings_from_controls(ctx, *key)
                stepper = Stepper(
                    start_run(ctx, settings), new_trajectory(settings), key, settings, time.perf_counter()
                )
            run, trajectory = stepper.run, stepper.trajectory
            k = advance(ctx, run, trajectory).step
            finished = slider = gr.skip()  # the slider keeps scrubbing the last finished run until this one ends
            title = f"**Step mode: step {k + 1} of {run.num_steps}**, seed {stepper.settings.seed}"
            # the word maps stay the last finished run's, as the slider does (moving it redraws them), until this
            # run ends
            words = gr.skip(), gr.skip(), f"Step mode: {STEPPING}; then they show this run."
            if run.done:
                seconds = time.perf_counter() - stepper.t0
                finished, _ = finish_run(ctx, run, trajectory, stepper.settings, seconds)
                slider = gr.Slider(maximum=max(k + 1, 2), value=k + 1)
                title += ", finished: the slider now scrubs this run"
                words = gr.skip(), gr.skip(), gr.skip()  # the finished run's, drawn as any new run's
            else:
                title += f" ({STEPPING})"
        frames = ctx.frames.view(trajectory, len(trajectory) - 1, title=title)
        return stepper, finished, slider, *frames, *words

    def refused_branch(self, run, k, prompt, guidance, seed) -> tuple[int, str] | None:
        """For the branch's validator: (index of the input, message) when a branch would be refused."""
        try:
            self._branch_settings(run, k, prompt, guidance, seed)
            return None
        except gr.Error as e:
            return getattr(e, "input_index", 0), e.message

    def _branch_settings(self, run, k, prompt, guidance, seed) -> tuple[int, SamplingSettings]:
        if not run:
            raise _InputError(1, "Generate an image first, then branch from one of its steps.")
        try:
            k = self._step(run, k)
        except gr.Error as e:
            raise _InputError(1, e.message) from e
        if k >= run.settings.num_inference_steps - 1:
            raise _InputError(1, f"Step {k + 1} is the last one: pick an earlier step to branch from.")
        prompt = prompt.strip() if isinstance(prompt, str) and prompt.strip() else run.settings.prompt
        try:
            check_prompt(prompt)
        except ValueError as e:
            raise _InputError(2, str(e)) from e
        # empty, as the prompt: the run's seed in the card, and `branch` continues the run's own noise
        seed = run.settings.seed if seed is None else seed
        settings = dataclasses.replace(run.settings, prompt=prompt, guidance_scale=guidance, seed=seed)
        error = self.ctx.limits.field_error(settings)
        if error is not None:
            raise _InputError(3 if error[0] == "guidance_scale" else 4, error[1])
        return k, checked(self.ctx, settings)

    @handler
    def branch(
        self,
        run: FinishedRun | None,
        k: float,
        prompt: str | None,
        guidance: float | None,
        seed: float | None,
        request: gr.Request,
    ) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
        """Continue the current run from step k with another prompt, guidance or seed for the noise still to
        come; returns the original and the branch side by side."""
        with self.ctx.jobs.job(request) as deadline:  # first: the visitor's slot is freed however this ends
            k, settings = self._branch_settings(run, k, prompt, guidance, seed)
            pipe = self.ctx.pipe.with_scheduler(settings.scheduler)
            own_noise = run.trajectory.noise_after(k) if seed is None else None  # the run's noise to come
            out = self.ctx.compute(
                pipe,
                **settings.pipeline_kwargs(),
                latents=run.trajectory.start_latents(k),
                start_step=k + 1,
                generator=own_noise or settings.generator(),
                callback_on_step_end=deadline.callback,
            )
        steps = settings.num_inference_steps
        if own_noise is not None:
            noise = "the run's own noise to come (if its sampler draws any)"
            if multistep(pipe.scheduler):  # DPM++, UniPC, DEIS: they keep a history
                noise += "; a multistep solver starts its history again here, so the branch is near the run"
        elif seed is None:
            noise = "no noise drawn as it steps"
        else:
            noise = f"new noise from seed {settings.seed} (Euler ancestral and DDPM draw noise as they step)"
        info = (
            f"Branched after step {k + 1} of {steps}: {settings.prompt!r}, guidance {settings.guidance_scale:g}, "
            f"{noise}."
        )
        if settings.first_block_cache:
            info += " The first-block cache starts afresh at the branch, so its first steps run in full."
        return upscale_nearest(run.image, DISPLAY_SIDE), upscale_nearest(out.images[0], DISPLAY_SIDE), info

    # ------------------------------------------------------------------ exports
    @handler
    def export_gif(self, run: FinishedRun | None, request: gr.Request) -> str:
        with self.ctx.jobs.job(request, WAIT):
            frames = self._x0_frames(run, scale=4, with_x_t=True)
        path = scratch_folder("trajectory-") / "trajectory.gif"
        save_gif(frames, path)
        return str(path)

    @handler
    def export_filmstrip(self, run: FinishedRun | None, request: gr.Request) -> str:
        with self.ctx.jobs.job(request, WAIT):
            frames = self._x0_frames(run, scale=2)
        path = scratch_folder("trajectory-") / "trajectory.png"
        filmstrip(frames, scale=1).save(path)
        return str(path)

    def _x0_frames(self, run: FinishedRun | None, scale: int, with_x_t: bool = False) -> list[PIL.Image.Image]:
        """Each step's x0, enlarged `scale` times over its step and timestep (a slide reads which is which); with
        `with_x_t`, x_t beside it, so the GIF shows noise turning into an image, not only the guesses sharpening."""
        if not run:
            raise gr.Error("Generate an image first: then its trajectory can be exported.")
        frames, traj = self.ctx.frames.all_x0(run.trajectory), run.trajectory
        if with_x_t:
            x_t = (upscale_nearest(self.ctx.frames.x_t(traj, k), f.width) for k, f in enumerate(frames))
            frames = [filmstrip([noisy, f], scale=1) for noisy, f in zip(x_t, frames)]
        return step_frames(frames, traj.timesteps, scale)


class _InputError(gr.Error):
    """A refusal that knows which of the event's inputs it concerns (for the validator's message)."""

    def __init__(self, input_index: int, message: str):
        super().__init__(message)
        self.input_index = input_index
