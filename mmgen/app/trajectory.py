"""The Trajectory tab: every step of the session's last run (the noisy latent x_t, the model's guess of the clean
image x0, its tokens, the tokens that changed), scrubbed with a slider or played; a step mode that runs the
sampler one step per click; a branch that continues the run from a step under other settings; exports."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import PIL.Image

from ..callbacks import TrajectoryRecorder
from ..denoising import DenoisingRun
from ..settings import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, MAX_SEED, SamplingSettings
from ..viz import cell_size, filmstrip, save_gif, step_bars, upscale_nearest
from .context import DISPLAY_SIDE, AppContext
from .files import scratch_folder
from .runs import FinishedRun, checked, finish_run, frame_view, settings_from_controls, start_run

PLAY_FRAME_S = 0.15
NO_RUN = "Generate an image first: its trajectory appears here."


@dataclass
class Stepper:
    """A run advanced one step per click (step mode), and the controls' values it was started from."""

    run: DenoisingRun
    recorder: TrajectoryRecorder
    key: tuple  # the controls' raw values: a change starts a new run
    settings: SamplingSettings
    t0: float


class TrajectoryTab:
    """The tab's components and handlers. `step` and `views` are filled by the Generate tab's runs too;
    `run_state` holds the session's last finished run (a `FinishedRun`)."""

    def __init__(self, ctx: AppContext, run_state: gr.State):
        self.ctx, self.run_state = ctx, run_state
        self.stepper_state = gr.State(None)
        with gr.Tab("Trajectory", id="trajectory"):
            gr.Markdown(
                "Every step of the last run: the noisy latent x_t (its 8 channels projected on the codebook's"
                " 3 main axes), the model's guess of the clean image x0, that guess's tokens, and which "
                "tokens changed since the previous step."
            )
            with gr.Row():
                self.prev_btn = gr.Button("◀ Previous", elem_id="prev", size="sm")
                self.play_btn = gr.Button("▶ Play", elem_id="play", size="sm")
                self.next_btn = gr.Button("Next ▶", elem_id="next", size="sm")
                self.step_btn = gr.Button(
                    "Step mode: run one step", variant="secondary", elem_id="step-once", size="sm"
                )
            self.step = gr.Slider(0, DEFAULT_STEPS - 1, value=0, step=1, label="Step", elem_id="step")
            with gr.Row():
                x_t = gr.Image(label="x_t", interactive=False, elem_id="x-t")
                x0 = gr.Image(label="Predicted clean image x0", interactive=False, elem_id="x0")
                x0_tokens = gr.Image(label="Its tokens", interactive=False, elem_id="x0-tokens")
                changed = gr.Image(
                    label="Tokens changed since the previous step", interactive=False, elem_id="changed"
                )
            with gr.Row():
                change_plot = gr.Image(label="Tokens changed per step", interactive=False, elem_id="change-plot")
                step_info = gr.Markdown(elem_id="step-info")
            self.views = [x_t, x0, x0_tokens, changed, change_plot, step_info]
            self._build_branch()
            with gr.Row():
                self.gif_btn = gr.Button("Export GIF", size="sm", elem_id="export-gif")
                self.strip_btn = gr.Button("Export filmstrip PNG", size="sm", elem_id="export-strip")
                self.export_file = gr.File(label="Export", interactive=False, elem_id="export-file")

    def _build_branch(self) -> None:
        with gr.Accordion("Branch from this step", open=False):
            with gr.Row():
                self.branch_prompt = gr.Textbox(label="Prompt (empty: the same)", elem_id="branch-prompt")
                self.branch_guidance = gr.Slider(
                    0, 10, value=DEFAULT_GUIDANCE_SCALE, step=0.5, label="Guidance", elem_id="branch-guidance"
                )
                self.branch_seed = gr.Number(
                    value=1,
                    precision=0,
                    minimum=0,
                    maximum=MAX_SEED,
                    label="Seed of the noise to come",
                    elem_id="branch-seed",
                )
                self.branch_btn = gr.Button("Branch", elem_id="branch")
            with gr.Row():
                self.original_out = gr.Image(label="Original", interactive=False, elem_id="branch-original")
                self.branch_out = gr.Image(label="Branch", interactive=False, elem_id="branch-result")
            self.branch_info = gr.Markdown(elem_id="branch-info")

    def wire(self, controls: list[gr.components.Component]) -> None:
        """The tab's events; step mode reads the Generate tab's sampling `controls` (in /generate's order)."""
        run, step, views = self.run_state, self.step, self.views
        step.change(self.show_step, [run, step], views, api_name="show_step")
        self.prev_btn.click(self.previous_step, [run, step], step, api_name="previous_step")
        self.next_btn.click(self.next_step, [run, step], step, api_name="next_step")
        self.play_btn.click(
            self.play, run, [step, *views], api_name="play", concurrency_id="play", concurrency_limit=4
        )
        self.step_btn.click(
            self.step_once,
            [*controls, self.stepper_state],
            [self.stepper_state, run, step, *views],
            api_name="step_once",
            concurrency_id="model",
        )
        self.branch_btn.click(
            self.branch,
            [run, step, self.branch_prompt, self.branch_guidance, self.branch_seed],
            [self.original_out, self.branch_out, self.branch_info],
            api_name="branch",
            concurrency_id="model",
        )
        self.gif_btn.click(self.export_gif, run, self.export_file, api_name="export_gif")
        self.strip_btn.click(self.export_filmstrip, run, self.export_file, api_name="export_filmstrip")

    # ------------------------------------------------------------------ scrubbing (no model call)
    def show_step(self, run: FinishedRun | None, k: float) -> tuple:
        """The trajectory at step k: x_t, predicted x0, its tokens, tokens changed since step k-1."""
        if not run:
            raise gr.Error(NO_RUN)
        return frame_view(run.frames, min(max(int(k), 0), len(run.frames) - 1), self.ctx.grid_side)

    def previous_step(self, run: FinishedRun | None, k: float) -> int:
        return self._move(run, k, -1)

    def next_step(self, run: FinishedRun | None, k: float) -> int:
        return self._move(run, k, +1)

    def _move(self, run: FinishedRun | None, k: float, delta: int) -> int:
        if not run:
            raise gr.Error(NO_RUN)
        return min(max(int(k) + delta, 0), len(run.frames) - 1)

    def play(self, run: FinishedRun | None) -> Iterator[tuple]:
        """Animate the slider over every step (the frames are drawn already, so this only sends images)."""
        if not run:
            raise gr.Error(NO_RUN)
        for k in range(len(run.frames)):
            yield k, *frame_view(run.frames, k, self.ctx.grid_side)
            time.sleep(PLAY_FRAME_S)

    # ------------------------------------------------------------------ step mode and branches
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
    ) -> tuple:
        """Step mode: run the sampler one step per click. A new run starts when none is under way, the last one
        finished, or the settings changed; a finished run becomes the trajectory the slider scrubs."""
        key = (prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates)
        if stepper is None or stepper.run.done or stepper.key != key:
            settings = settings_from_controls(*key)
            run = start_run(self.ctx, settings)
            stepper = Stepper(run, TrajectoryRecorder(decode=False), key, settings, time.perf_counter())
        run, recorder = stepper.run, stepper.recorder
        out = run.step()
        recorder(run.pipe, out.step, out.timestep, out)
        k = out.step
        side = self.ctx.grid_side
        frame = recorder.render_step(run.pipe, len(recorder.steps) - 1, cell=cell_size((side, side), DISPLAY_SIDE))
        counts = [int(s.changed[0].sum()) for s in recorder.steps]
        x_t, x0 = (upscale_nearest(frame[name], DISPLAY_SIDE) for name in ("x_t", "x0"))
        info = (
            f"**Step mode: step {k + 1} of {run.num_steps}** (seed {stepper.settings.seed}) · "
            f"{frame['n_changed']} tokens changed"
        )
        finished = slider = gr.skip()  # the slider keeps scrubbing the last finished run until this one ends
        if run.done:
            finished, _ = finish_run(self.ctx, run, recorder, stepper.settings, time.perf_counter() - stepper.t0)
            slider = gr.Slider(maximum=max(k, 1), value=k)
            info += " · finished: the slider now scrubs this run"
        return stepper, finished, slider, x_t, x0, frame["tokens"], frame["changed"], step_bars(counts, k), info

    def branch(
        self, run: FinishedRun | None, k: float, prompt: str | None, guidance: float | None, seed: float | None
    ) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
        """Continue the current run from step k with another prompt, guidance or seed for the noise still to
        come; returns the original and the branch side by side."""
        if not run:
            raise gr.Error("Generate an image first, then branch from one of its steps.")
        k, steps = int(k), run.settings.num_inference_steps
        if k >= steps - 1:
            raise gr.Error(f"Step {k + 1} is the last one: pick an earlier step to branch from.")
        prompt = (prompt or "").strip() or run.settings.prompt
        settings = checked(dataclasses.replace(run.settings, prompt=prompt, guidance_scale=guidance, seed=seed))
        try:
            out = self.ctx.pipe.with_scheduler(settings.scheduler)(
                **settings.pipeline_kwargs(),
                latents=run.latents[k],
                start_step=k + 1,
                generator=settings.generator(),
            )
        except ValueError as e:
            raise gr.Error(str(e)) from e
        info = (
            f"Branched after step {k + 1} of {steps}: {settings.prompt!r}, guidance {settings.guidance_scale:g}, "
            f"seed {settings.seed}. Only Euler ancestral and DDPM draw noise from this seed."
        )
        return upscale_nearest(run.image, DISPLAY_SIDE), upscale_nearest(out.images[0], DISPLAY_SIDE), info

    # ------------------------------------------------------------------ exports
    def export_gif(self, run: FinishedRun | None) -> str:
        path = self._export_folder(run) / "trajectory.gif"
        save_gif([f["x0"] for f in run.frames], path)
        return str(path)

    def export_filmstrip(self, run: FinishedRun | None) -> str:
        path = self._export_folder(run) / "trajectory.png"
        filmstrip([f["x0"] for f in run.frames]).save(path)
        return str(path)

    def _export_folder(self, run: FinishedRun | None) -> Path:
        if not run:
            raise gr.Error("Generate an image first: then its trajectory can be exported.")
        return scratch_folder("trajectory-")
