"""The Generate tab: a prompt and the sampling controls in; the image, its tokens and downloads out, with a live
preview while it runs. A finished run also fills the Trajectory tab. A run card (JSON) loads the controls back,
so the next run reproduces it."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator

import gradio as gr
import PIL.Image
import torch

from ..run_card import read_run_card
from ..settings import (
    DEFAULT_GUIDANCE_INTERVAL,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    SCHEDULER_CLASSES,
    check_prompt,
)
from ..tokens import save_tokens
from ..viz import cell_size, overlay_tokens, token_map, upscale_nearest
from ..vocabulary import STOPWORDS
from .context import DISPLAY_SIDE, AppContext
from .errors import handler
from .files import scratch_folder
from .limits import MAX_GUIDANCE
from .runs import FinishedRun, advance, finish_run, new_trajectory, refused_controls, settings_from_controls, start_run

PREVIEW_EVERY_S = 0.5  # live previews while generating: twice a second, each a decode and an image sent
MAX_RUN_CARD_BYTES = 64 * 1024  # a run card is about 1 kB
KNOWN_SHOWN = 12  # known words named beside the words a prompt has that the model never saw
BROWSER_SECRET = secrets.token_hex(16)  # this server's key for what it keeps in visitors' browsers


class GenerateTab:
    """The tab's components and handlers. `controls` (the 8 sampling inputs, in /generate's order) are read by
    the Trajectory tab's step mode; `run_state` holds the session's last finished run (step mode's too), and
    `shown_run` the run this tab shows, which its overlay and "Read it back" read."""

    def __init__(self, ctx: AppContext, run_state: gr.State):
        self.ctx, self.run_state = ctx, run_state
        with gr.Tab("Generate", id="generate"):
            # inside the tab: a State among the Tabs' children took a tab's place in the tab bar
            self.shown_run = gr.State(None, time_to_live=ctx.limits.session_seconds)  # a runs.FinishedRun
            gr.Markdown(
                "A DiT turns noise into a grid of codebook tokens under your prompt, step by step, and the "
                "tokenizer's decoder paints them. Every step: the Trajectory tab; how it works: About."
            )
            with gr.Row():
                with gr.Column():
                    self._build_controls()
                with gr.Column():
                    self.image = gr.Image(label="Image", interactive=False, elem_id="image")
                    self.info = gr.Markdown(elem_id="generate-info")
                with gr.Column():
                    self.tokens = gr.Image(
                        label="Its tokens (a colour per code)", interactive=False, elem_id="image-tokens"
                    )
                    self.overlay = gr.Checkbox(False, label="Overlay the token grid on the image", elem_id="overlay")
                    self.read_back = gr.Button("Read it back as text (Image → text)", size="sm", elem_id="read-back")
            # under the row, not under the Generate button: on a phone the columns stack, and the image came
            # after the examples, a screen below the button
            gr.Examples(
                [[p] for p in self.ctx.example_prompts],
                inputs=self.prompt,
                label="Example prompts",
                api_name="example_prompt",
                api_visibility="private",
            )
            with gr.Row():
                self.downloads = gr.File(
                    label="Downloads: image, tokens, run card",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
                self.card_upload = gr.File(
                    label="Load a run card to reproduce it", file_types=[".json"], elem_id="run-card"
                )

    def _build_controls(self) -> None:
        self.prompt = gr.Textbox(label="Prompt", value=self.ctx.example_prompts[0], max_lines=3, elem_id="prompt")
        # The visitor's last prompt, kept in the browser: it follows them to another model's page and across
        # reloads (each page is a page load: its components start afresh). One secret for all pages: each reads it.
        self.typed_prompt = gr.BrowserState("", storage_key="mmgen-prompt", secret=BROWSER_SECRET)
        self.words_note = gr.Markdown(elem_id="unknown-words")
        self.use_known_words = gr.Button(
            "Say it in words the model knows", size="sm", visible=False, elem_id="use-known-words"
        )
        with gr.Group():  # one slider a line: two to a line wrapped their help text into columns of six lines
            limits, defaults = self.ctx.limits, self.ctx.facts.sampling  # the model's own defaults
            steps = min(defaults["num_inference_steps"], limits.max_steps)  # a Space may cap them under the default
            self.steps = gr.Slider(1, limits.max_steps, value=steps, step=1, label="Steps", elem_id="steps")
            self.guidance = gr.Slider(
                1,  # every scale up to 1 is the prompted guess alone: 0 and 0.5 were 1 by another name
                MAX_GUIDANCE,
                value=min(max(defaults["guidance_scale"], 1), MAX_GUIDANCE),
                step=0.5,
                label="Guidance",
                info="1: off; guides the noisier steps (t ≥ 250) only",
                elem_id="guidance",
            )
            self.snap = gr.Slider(
                0,
                1,
                value=defaults["codebook_snap"],
                step=0.05,
                label="Codebook snap",
                info="How far each step's x0 guess moves to its nearest codes (0: off)",
                elem_id="codebook-snap",
            )
            self.candidates = gr.Slider(
                1,
                limits.max_candidates,
                value=min(defaults["num_candidates"], limits.max_candidates),
                step=1,
                label="Candidates",
                info="Starting noises tried; the likeliest is kept",
                elem_id="candidates",
            )
        with gr.Row(equal_height=True):
            self.seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed")
            self.random_seed = gr.Checkbox(False, label="Random seed", elem_id="random-seed", min_width=130, scale=0)
        with gr.Row():
            own = self.ctx.scheduler_name()  # None: a sampler the list lacks, run when none is chosen
            self.scheduler = gr.Dropdown(
                list(SCHEDULER_CLASSES),
                value=own,
                label="Scheduler",
                info=None if own else f"none chosen: the model's own, {self.ctx.facts.scheduler_class}",
                elem_id="scheduler",
            )
        self.button = gr.Button("Generate", variant="primary", elem_id="generate")

    @property
    def controls(self) -> list[gr.components.Component]:
        """The sampling controls, in the order of /generate's and /step_once's inputs."""
        c = self
        return [c.prompt, c.steps, c.guidance, c.seed, c.random_seed, c.scheduler, c.snap, c.candidates]

    def wire(self) -> None:
        """The tab's events. A finished run is drawn by the Trajectory tab at its last step when someone looks at
        it: this tab leaves that tab's slider alone (set while its tab was hidden, the slider was mounted with the
        last run's range, sent a value clamped to it, and the tab drew 'Step 4 of 5' under a slider at 5)."""
        inputs = [*self.controls, self.overlay]
        outputs = [self.image, self.tokens, self.info, self.seed, self.run_state, self.shown_run, self.downloads]
        ctx = self.ctx
        model_event = ctx.jobs.model_event(lambda *values: refused_controls(ctx, *values))
        # After a run, the words it never saw under the prompt (a toast says so as the run starts), and the button
        # that says the prompt in words it knows. Not on every keystroke: an event on the prompt would clear the
        # message a refused run shows under it.
        self._note_words(self.button.click(self.generate, inputs, outputs, api_name="generate", **model_event), True)
        # whatever fills the box (typing, an example, a run card), kept by the browser alone: no request per key
        self.prompt.change(None, self.prompt, self.typed_prompt, js="(p) => p", api_visibility="private")
        self._note_words(
            self.prompt.submit(
                self.generate, inputs, outputs, api_name="generate_on_submit", api_visibility="private", **model_event
            )
        )
        self.use_known_words.click(
            self.in_known_words, self.prompt, self.prompt, api_name="in_known_words", show_progress="hidden"
        ).success(self.hide_words_note, None, [self.words_note, self.use_known_words], api_visibility="private")
        self.overlay.change(
            self.toggle_overlay, [self.shown_run, self.overlay], self.tokens, api_name="toggle_overlay"
        )
        card = self.card_upload.upload(self.load_run_card, self.card_upload, self.controls, api_name="load_run_card")
        self._note_words(
            card.success(
                self.generate, inputs, outputs, api_name="generate_from_card", api_visibility="private", **model_event
            )
        )

    def _note_words(self, run: gr.events.Dependency, public: bool = False) -> None:
        """After `run` succeeds: the note on the words the model never saw (one public /check_words endpoint),
        then the button that puts the prompt in words it knows, shown while there is a note."""
        visibility = {"api_name": "check_words"} if public else {"api_visibility": "private"}
        run.success(self.check_words, self.prompt, self.words_note, show_progress="hidden", **visibility).success(
            self.words_button, self.words_note, self.use_known_words, api_visibility="private", queue=False
        )

    # ------------------------------------------------------------------ handlers
    @handler
    def generate(
        self,
        prompt: str,
        steps: float,
        guidance: float,
        seed: float | None,
        random_seed: bool,
        scheduler: str,
        snap: float,
        candidates: float,
        overlay: bool,
        request: gr.Request,
    ) -> Iterator[tuple]:
        """Text -> image, streamed: a preview of the predicted image while it runs, then the final image, its
        tokens and downloads (the Trajectory tab draws the run when shown). With
        candidates, the pipeline first picks the most likely of that many starting noises (before the first
        preview). Every model call runs on the model thread; a run past the Space's time limit is stopped."""
        ctx = self.ctx
        skip = [gr.skip()] * 3  # the outputs that wait for the end of the run
        with ctx.jobs.job(request) as deadline:  # first: the visitor's slot is freed however this ends
            controls = prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates
            settings = settings_from_controls(ctx, *controls)
            unknown = self.unknown_words(settings.prompt)
            if unknown:
                gr.Warning(unknown)  # the run goes ahead: the model may still draw what it knows
            t0 = time.perf_counter()
            run, trajectory = start_run(ctx, settings), new_trajectory(settings)
            last_preview, ran = 0.0, 0  # ran: the steps done
            try:
                while not run.done:
                    deadline.check()
                    out = advance(ctx, run, trajectory)
                    ran = out.step + 1
                    # A preview costs a decode and an image sent to the browser: at most one per PREVIEW_EVERY_S.
                    if not run.done and time.perf_counter() - last_preview >= PREVIEW_EVERY_S:
                        preview = upscale_nearest(ctx.frames.x0(trajectory, out.step), DISPLAY_SIDE)
                        progress = (
                            f"step {ran} of {settings.num_inference_steps} ... (shown: the model's guess of the "
                            "finished image at this step; the noisy x_t is on the Trajectory tab)"
                        )
                        yield preview, gr.skip(), progress, settings.seed, *skip
                        last_preview = time.perf_counter()
            except Exception:  # stopped (the Space's time limit, an error): a preview's "step k of n ..." looked live
                if last_preview:
                    stopped = f"**Stopped after step {ran} of {settings.num_inference_steps}**: no image was made."
                    yield gr.skip(), gr.skip(), stopped, settings.seed, *skip
                raise
            finished, info = finish_run(ctx, run, trajectory, settings, time.perf_counter() - t0)
        yield (
            upscale_nearest(finished.image, DISPLAY_SIDE),
            self.show_tokens(finished.image, finished.tokens, overlay),
            info,
            settings.seed,
            finished,
            finished,
            self.write_run_files(finished),
        )

    def unknown_words(self, prompt: str) -> str | None:
        """ "The model never saw: cat, sofa (try: ...)" and/or what of a long prompt it never reads, or None
        (every word known, or no vocabulary saved, and the whole prompt read)."""
        if not isinstance(prompt, str):
            return None
        pipe, vocabulary, notes = self.ctx.pipe, self.ctx.vocabulary, []  # waits while the model loads
        # transformers only now: its lazy imports break for good when two threads run them at once (the loader's)
        from ..models.text_encoder import MAX_TOKENS, unread_text

        def read() -> tuple[str | None, str]:  # the tokenizer on the model's thread, as every use of it
            warning = vocabulary and vocabulary.warning(prompt, (pipe.tokenizer, pipe.text_encoder))
            return warning, unread_text(pipe.tokenizer, prompt)

        message, unread = self.ctx.compute(read)
        if message:
            known = [w for w in vocabulary.words if w not in STOPWORDS]
            notes.append(
                f"{message[0].upper()}{message[1:]}: it will guess. It knows {len(known)} words, e.g. "
                f"{', '.join(known[:KNOWN_SHOWN])}."
            )
        if unread:
            shown = unread if len(unread) <= 60 else unread[:57] + "..."
            notes.append(f"It reads the first {MAX_TOKENS - 2} word pieces of a prompt: {shown!r} is ignored.")
        return " ".join(notes) or None

    @handler
    def check_words(self, prompt: str | None) -> str:
        """A note under the prompt on the words the model never saw and what of a long prompt it never reads (the
        run is not blocked)."""
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
            return ""
        message = self.unknown_words(prompt)
        return f"⚠️ {message}" if message else ""

    def restore_typed_prompt(self, demo: gr.Blocks, api_name: str) -> None:
        """On each load of `demo`'s page holding this tab: the visitor's last prompt, from any model's page."""
        demo.load(
            lambda typed: typed if isinstance(typed, str) and typed.strip() else gr.skip(),
            self.typed_prompt,
            self.prompt,
            api_name=api_name,
            api_visibility="private",
            queue=False,
        )

    @staticmethod
    def words_button(note: str) -> gr.Button:
        return gr.Button(visible=bool(note))

    @staticmethod
    def hide_words_note() -> tuple[str, gr.Button]:
        return "", gr.Button(visible=False)

    @handler
    def in_known_words(self, prompt: str | None) -> str:
        """The prompt in the model's training words: each word it never saw becomes the known word nearest in
        spelling or meaning, or goes (`Vocabulary.in_known_words`)."""
        prompt, vocabulary = check_prompt(prompt), self.ctx.vocabulary
        if vocabulary is None:
            raise gr.Error("This model was published without its vocabulary: its training words are not known.")
        pipe = self.ctx.pipe
        known = self.ctx.compute(vocabulary.in_known_words, prompt, (pipe.tokenizer, pipe.text_encoder))
        if not known:
            raise gr.Error("The prompt names nothing the model knows, or anything near it.")
        return known

    @handler
    def toggle_overlay(self, run: FinishedRun | None, overlay: bool) -> PIL.Image.Image | None:
        """The shown run's tokens, over its image or beside it; with no run (none yet, or kept past the session's
        time), the panel as it is."""
        return self.show_tokens(run.image, run.tokens, overlay) if run else gr.skip()

    @handler
    def load_run_card(self, path: str | None) -> tuple:
        """A run card (JSON) -> the Generate controls, so the next run reproduces it exactly; a card whose
        settings this Space would refuse is refused here, with the same message."""
        if not path:
            raise gr.Error("Choose a run card (.json) first.")
        if os.path.getsize(path) > MAX_RUN_CARD_BYTES:
            raise gr.Error(f"Not a run card: the file is over {MAX_RUN_CARD_BYTES // 1024} kB (a run card is ~1 kB).")
        cache = self.ctx.facts.sampling["first_block_cache"]
        limits = self.ctx.limits.check_sampling  # the Space's limits, with their messages, not the library's
        loaded = read_run_card(
            path, self.ctx.model_name, DEFAULT_GUIDANCE_INTERVAL, cache, check=limits, matmuls=self.ctx.matmuls
        )
        s = loaded.settings
        gr.Info(f"Run card loaded{''.join(f' ({note})' for note in loaded.notes)}: generating.")
        scheduler = s.scheduler or self.ctx.scheduler_name()  # cards without one ran the model's own
        values = (s.prompt, s.num_inference_steps, s.guidance_scale, s.seed, False, scheduler, s.codebook_snap)
        return *values, s.num_candidates

    # ------------------------------------------------------------------ helpers (no model logic)
    def show_tokens(self, image: PIL.Image.Image, tokens: torch.Tensor, overlay: bool) -> PIL.Image.Image:
        big = upscale_nearest(image, DISPLAY_SIDE)
        if overlay:
            return overlay_tokens(big, tokens, self.ctx.num_codes)
        return token_map(tokens, self.ctx.num_codes, cell=cell_size(tokens.shape, target=DISPLAY_SIDE))

    def write_run_files(self, run: FinishedRun) -> list[str]:
        """The downloads: the image, its tokens and its run card, in a fresh scratch folder."""
        ctx, folder = self.ctx, scratch_folder("run-")
        run.image.save(folder / "image.png")
        meta = {"model_id": ctx.model_name, "num_codes": ctx.num_codes, "downsample_factor": ctx.vq.downsample_factor}
        save_tokens(run.tokens, folder / "tokens.json", **meta)
        (folder / "run_card.json").write_text(json.dumps(run.card, indent=2))
        return [str(folder / n) for n in ("image.png", "tokens.json", "run_card.json")]
