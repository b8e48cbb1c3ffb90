"""The Image → text tab: the generator read backwards. An image (uploaded, or sent from the Generate tab) is
noised and denoised under each caption; the caption under which the DiT denoises it best is the one it finds most
likely (`mmgen.captioning`). Rank your own captions, or let the model write one (for a shapes-v1 model, a search
over its caption grammar)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import PIL.Image

from ..captioning import NAMES_NOTHING, RANK_NOISES, RANK_TIMESTEPS, caption_candidates, explained, rank_captions
from ..charts import score_bars
from ..examples import scene_captions
from ..images import ImageLoadError, fit_square, load_image
from ..viz import upscale_nearest
from ..vocabulary import SHAPES_V1
from .context import DISPLAY_SIDE, AppContext
from .errors import handler
from .files import uploaded_file
from .jobs import Deadline
from .runs import FinishedRun

MAX_CAPTIONS = 16  # captions ranked at once: 16 x 20 noised samples, about a generation's cost
MAX_CAPTION_TEXT = 16 * 300  # characters in the captions box
SAMPLES = len(RANK_TIMESTEPS) * RANK_NOISES  # noised copies each ranked caption is scored on
RANKED_ERRORS = f"Errors are mean squared latent errors over {SAMPLES} fixed noised copies; only differences matter."
NO_IMAGE = "Upload an image first, or send the generated one here from the Generate tab."


def parse_captions(text: str | None) -> list[str]:
    """One caption per line, blank lines dropped, repeats kept once; too many or too long: a message."""
    if text is not None and not isinstance(text, str):
        raise gr.Error("Captions must be text, one per line.")
    if text and len(text) > MAX_CAPTION_TEXT:
        raise gr.Error(f"That is {len(text):,} characters: at most {MAX_CAPTION_TEXT:,}, {MAX_CAPTIONS} captions.")
    captions = list(dict.fromkeys(line.strip() for line in (text or "").splitlines() if line.strip()))
    if len(captions) > MAX_CAPTIONS:
        raise gr.Error(f"{len(captions)} captions: rank at most {MAX_CAPTIONS} at once.")
    return captions


def bar_chart(ranked: list[tuple[str, float]], rows: int = MAX_CAPTIONS) -> PIL.Image.Image:
    """The best `rows` of the ranked captions as bars, longest for the best: each bar's length is how much lower its
    denoising error is than the worst ranked caption's (the best's bar is orange); beside it, the error itself (a
    difference read as an error: the worst caption's "0.0000" looked perfect). A model's own 256 training captions,
    all drawn, made a chart 7,000 px tall."""
    errors = [e for _, e in ranked]
    worst = max(errors)
    gains = [worst - e for e in errors[:rows]]
    shown = [f"{e:.4f}" for e in errors[:rows]]
    return score_bars([c for c, _ in ranked[:rows]], gains, 0.0, max(max(gains), 1e-9), width=440, shown=shown)


class CaptionTab:
    """The tab's components and handlers."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        with gr.Tab("Image → text", id="caption") as self.tab:
            gr.Markdown(
                "The generator read backwards: the image is noised and denoised under each caption (10 noise "
                "levels × 2 fixed noises); the lower the denoising error, the likelier the model finds the "
                "caption. Rank your own captions, or let the model write one."
            )
            with gr.Row():
                with gr.Column():
                    self.image = gr.Image(
                        type="filepath",
                        image_mode=None,  # the handler reads the header first (size checks before decoding)
                        label="Image",
                        sources=["upload", "clipboard"],
                        elem_id="caption-image",
                    )
                    self.captions = gr.Textbox(
                        label=f"Captions to rank, one per line (at most {MAX_CAPTIONS})",
                        lines=5,
                        max_length=MAX_CAPTION_TEXT,
                        placeholder="a red circle on a white background\na blue square on a white background",
                        elem_id="caption-candidates",
                    )
                    with gr.Row():
                        self.rank_btn = gr.Button("Rank these captions", variant="primary", elem_id="rank-captions")
                        self.caption_btn = gr.Button("Caption it", elem_id="caption-it")
                    self._build_examples()
                with gr.Column():
                    self.shown = gr.Image(label="As the model reads it", interactive=False, elem_id="caption-shown")
                    gr.Markdown(
                        "**Captions, best first**: each one's denoising error (lower: likelier); bar: how much "
                        "lower than the worst's"
                    )
                    self.chart = gr.Image(  # its title above, not laid over it: it hid the best row at any width
                        label="Captions, best first",
                        show_label=False,
                        interactive=False,
                        elem_id="caption-chart",
                    )
                    self.info = gr.Markdown(elem_id="caption-info")

    def _build_examples(self) -> None:
        """The shapes scenes, each with its caption and three wrong ones to rank; a model without them (emoji) gets
        its example images alone (a row of an image without captions would clear the ones typed)."""
        examples = self.ctx.example_images()
        scenes = [[path, "\n".join(captions)] for path in examples if (captions := scene_captions(Path(path).name))]
        if scenes:
            gr.Examples(scenes, [self.image, self.captions], api_name="caption_example", api_visibility="private")
        elif examples:
            gr.Examples(examples, self.image, api_name="caption_example", api_visibility="private")

    def wire(self) -> None:
        outputs = [self.shown, self.chart, self.info]
        model_event = self.ctx.jobs.model_event()  # preprocess=False: the upload arrives unopened
        self.rank_btn.click(self.rank, [self.image, self.captions], outputs, api_name="rank_captions", **model_event)
        self.caption_btn.click(self.caption, self.image, outputs, api_name="caption", **model_event)
        # another image (uploaded, an example, read back): the last one's ranking would read as this one's
        self.image.change(lambda: (None, None, ""), None, outputs, api_visibility="private")

    def send_from(self, button: gr.Button, run_state: gr.State, tabs: gr.Tabs) -> None:
        """`button` (on the Generate tab) sends the session's last image here with its prompt, the first caption
        to rank, and opens this tab."""
        button.click(
            self.receive, [run_state, self.captions], [self.image, self.captions, tabs], api_visibility="private"
        )

    @handler
    def receive(self, run: FinishedRun | None, captions: str | None, request: gr.Request = None):
        """The run's image, and its prompt at the top of the captions (those typed before stay under it); while a
        run of the session is under way, a note to wait for it (it sent the run before, unsaid, or nothing)."""
        if self.ctx.jobs.busy(request):  # any model job of the session: a run, a repaint, a ranking, a branch
            raise gr.Error("Your last job is still running: read the image back when it is done.")
        if not run:
            minutes = f"{self.ctx.limits.session_minutes:g}"
            raise gr.Error(f"Generate an image first (the last one is kept {minutes} minutes).")
        typed, prompt = (captions if isinstance(captions, str) else "").strip(), run.settings.prompt.strip()
        with_prompt = f"{prompt}\n{typed}".strip()
        lines = [line.strip() for line in typed.splitlines() if line.strip()]
        full = len(lines) >= MAX_CAPTIONS or len(with_prompt) > MAX_CAPTION_TEXT  # Rank would refuse one more
        if not prompt or prompt in lines or full:
            with_prompt = typed
        return run.image, with_prompt, gr.Tabs(selected="caption")

    # ------------------------------------------------------------------ handlers
    def read_image(self, upload) -> tuple[PIL.Image.Image, str]:
        """The image at the generator's size, its file's size checked from the header before decoding, and a note
        when it was cut to a square."""
        path = uploaded_file(upload)
        if not path:
            raise gr.Error(NO_IMAGE)
        try:
            image = load_image(path, max_pixels=self.ctx.limits.max_upload_pixels)
        except ImageLoadError as e:
            raise gr.Error(f"That file can't be used: {e.reason}.") from e
        side = self.ctx.facts.image_side
        try:
            fitted, note = fit_square(image, side)
        except ValueError as e:
            raise gr.Error(f"{str(e)[0].upper()}{str(e)[1:]}; the model reads {side}×{side} images.") from e
        return fitted, f" {note}" if note else ""

    @handler
    def rank(self, upload, text: str | None, request: gr.Request) -> tuple:
        """The typed captions ranked by the DiT's denoising error on the image."""
        with self.ctx.jobs.job(request) as deadline:  # from the start: the slot is freed however this ends
            captions = parse_captions(text)
            if not captions:
                raise gr.Error("Type the captions to rank, one per line, or press 'Caption it'.")
            image, note = self.read_image(upload)
            turn = self.turns(deadline)
            ranked = rank_captions(self.ctx.pipe, image, captions, turn)
            share = explained(self.ctx.pipe, image, ranked[0][0], turn)
        return self._shown(image, ranked, f"Ranked {len(ranked)} caption(s).{note}", RANKED_ERRORS, share, own=False)

    @handler
    def caption(self, upload, request: gr.Request) -> tuple:
        """The model's own caption: a search over its caption grammar, or a ranking of its training captions."""
        with self.ctx.jobs.job(request) as deadline:
            image, note = self.read_image(upload)
            vocabulary = self.ctx.vocabulary
            turn = self.turns(deadline)
            ranked = caption_candidates(self.ctx.pipe, image, vocabulary, turn=turn)
            share = explained(self.ctx.pipe, image, ranked[0][0], turn)
        if vocabulary is not None and vocabulary.grammar == SHAPES_V1:  # `caption_candidates` searched the grammar
            errors = (
                "Errors are mean squared latent errors over fixed noised copies (the search uses fewer than "
                "'Rank': compare them only with each other)."
            )
        else:  # it ranked the model's training captions, as 'Rank' ranks
            errors = RANKED_ERRORS
        return self._shown(image, ranked, f"The model's caption: **{ranked[0][0]}**.{note}", errors, share, own=True)

    def turns(self, deadline: Deadline):
        """`captioning`'s `turn`: each piece of model work on the model thread, after the job's time check, so a
        caption search (4 to 20 s on mmgen-base on a 2-core CPU) takes turns with other visitors' jobs instead of
        holding the thread."""

        def turn(fn, *args):
            deadline.check()
            return self.ctx.compute(fn, *args)

        return turn

    def _shown(self, image: PIL.Image.Image, ranked: list, title: str, errors: str, share: float, own: bool) -> tuple:
        """The image, the ranking's chart and its info line: the best caption, its error and the share of the
        empty prompt's error it takes away (`captioning.explained`), with a warning where that is next to none."""
        best, error = ranked[0]
        info = (
            f"{title}  \nBest: **{best}** (denoising error {error:.4f}"
            + (f", {ranked[1][1] - error:.4f} below the runner-up, *{ranked[1][0]}*" if len(ranked) > 1 else "")
            + f"; it takes away {round(share, 2) or 0.0:.0%} of the error the empty prompt leaves). {errors}"
        )
        if len(ranked) > MAX_CAPTIONS:
            info += f" The chart shows the best {MAX_CAPTIONS} of the {len(ranked)} ranked."
        if share < NAMES_NOTHING and own:
            info += (
                "  \n⚠️ The model finds its best caption hardly more likely than no caption at all: the image may hold "
                "nothing it knows how to name (a blank canvas, a photo). The caption is its guess, not a reading."
            )
        elif share < NAMES_NOTHING:
            info += (
                "  \n⚠️ The model finds none of these captions much more likely than no caption at all: they may not "
                "describe the image, or it holds nothing the model knows how to name."
            )
        return upscale_nearest(image, DISPLAY_SIDE), bar_chart(ranked), info
