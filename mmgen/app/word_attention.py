"""The Trajectory tab's per-word attention: where the DiT reads each word of the prompt, step by step.

Every run records, per step, what the DiT read. When this section shows a step of a run, the DiT reads that step
again on the model thread, and each word's share of its cross-attention on the patch grid
(`mmgen.attention.replay_word_grids`) is kept in the run's `Trajectory` (float16, ~1.3 kB a step). Finding it
after the run keeps it out of the time to the image, and only the steps shown are replayed (a replayed step costs
what its conditional half did in the run, about 12 ms for mmgen-base). The section draws the chosen word's map
over the predicted clean image x0 at the slider's step, and a strip of that word's map over the run's steps, all
on one colour scale (0 to the word's largest share at the strip's steps).
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import PIL.Image
import torch

from ..charts import with_colour_bar
from ..viz import LABEL_ROOM, overlay_heatmap, upscale_nearest, word_map_strip
from .context import DISPLAY_SIDE, WIDE_VIEW, AppContext
from .errors import handler
from .frames import Trajectory
from .runs import FinishedRun

STRIP_STEPS = 10  # steps shown in the strip, evenly spaced, the last always included
FUNCTION_WORDS = {"a", "an", "the", "on", "in", "of", "at", "to", "and", "with", "picture", "image", "background"}
NO_ATTENTION = "Generate an image first: each word's attention appears here."


def default_word(words: list[str]) -> str | None:
    """The first word that names something (a colour, a shape, a size...), else the first word."""
    return next((w for w in words if w.lower() not in FUNCTION_WORDS), words[0] if words else None)


def word_index(trajectory: Trajectory, word: str | None) -> int:
    if not trajectory.attention:
        raise gr.Error("This run recorded no attention (its prompt could not be split into words).")
    if word not in trajectory.words:
        raise gr.Error(f"Pick one of the prompt's words: {', '.join(trajectory.words)}.")
    return trajectory.words.index(word)


def strip_steps(n: int, shown: int = STRIP_STEPS) -> list[int]:
    """At most `shown` step indices of n, evenly spaced, first and last included."""
    return sorted({round(i * (n - 1) / max(shown - 1, 1)) for i in range(min(shown, n))})


class WordAttentionView:
    """The section's components (built where the Trajectory tab places them) and handlers."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        with gr.Accordion("Which word goes where: the DiT's cross-attention per word", open=True):
            gr.Markdown(
                "Each image patch's cross-attention spreads over the prompt's tokens; a word's map is its share "
                "(its word pieces summed), averaged over every block and head of the DiT at the step, on the "
                "patch grid, drawn over x0. The DiT reads the text encoder's states after the small layers "
                "trained with it, so a word's state carries some of its neighbours' meaning; a word the model "
                "never saw (an emoji is read as [UNK]) still gets a map, which says little."
            )
            self.word = gr.Radio([], label="Word of the prompt", elem_id="attention-word")
            with gr.Row():
                self.map = gr.Image(  # min_width: on a phone the text goes under it (beside, it squeezed it to a line)
                    label="Its attention over x0 at this step",
                    interactive=False,
                    elem_id="attention-map",
                    min_width=WIDE_VIEW,
                )
                self.info = gr.Markdown(elem_id="attention-info")
            self.strip = gr.Image(label="The word across the steps", interactive=False, elem_id="attention-strip")

    @property
    def outputs(self) -> list[gr.components.Component]:
        """What `refresh` fills: the word picker, the map, the strip and the info line."""
        return [self.word, self.map, self.strip, self.info]

    def wire(self, run_state: gr.State, step: gr.Slider, shown: gr.State) -> None:
        """The section's events. `shown` (the Trajectory tab is open) keeps a moved slider from replaying the
        DiT for a visitor who is not looking; the tab calls `refresh` when it opens and on a new run."""
        # preprocess=False: the word is checked against this session's run (gradio would check the page's choices)
        inputs = [run_state, step, self.word]
        # then: the map again at the slider's step now (the step may have moved while the word's strip was drawn,
        # e.g. just after the tab opened, and that step's own draw would otherwise be overwritten)
        self.word.change(
            self.show, inputs, [self.map, self.strip, self.info], api_name="word_attention", preprocess=False
        ).then(self.show_step, [*inputs, shown], [self.map, self.info], api_visibility="private", preprocess=False)
        step.change(  # no progress overlay: a played step is no job to wait for, and the overlay greyed the map
            self.show_step,
            [*inputs, shown],
            [self.map, self.info],
            api_visibility="private",
            preprocess=False,
            show_progress="hidden",
        )

    def refresh(self, run: FinishedRun | None, k: float | None, word: str | None) -> tuple:
        """The word picker for `run`'s words (keeping `word` if the prompt has it, else its first word that names
        something) and that word's map, strip and info line at step k (drawn by the picker's change event when the
        word changes); a note when there is no run yet."""
        if not run:
            return gr.Radio(choices=[], value=None), None, None, NO_ATTENTION
        words = self._trajectory(run, k).words
        shown = word if word in words else default_word(words)
        if shown is None:
            return gr.Radio(choices=[], value=None), None, None, "This run recorded no attention."
        if shown != word:  # the picker's change event draws it
            return gr.Radio(choices=words, value=shown), gr.skip(), gr.skip(), gr.skip()
        return gr.Radio(choices=words, value=shown), *self.show(run, k, shown)

    @handler
    def show(self, run: FinishedRun | None, k: float | None, word: str | None) -> tuple:
        """The word's map at step k over x0, its strip over the steps, and a line on where it peaks."""
        trajectory = self._trajectory(run, k)
        i = word_index(trajectory, word)
        k, vmax = self._step(trajectory, k), self._vmax(trajectory, i)
        steps = strip_steps(len(trajectory))
        frames = [self.ctx.frames.x0(trajectory, s) for s in steps]
        heats = [trajectory.attention[s][i].float().numpy() for s in steps]
        labels = [f"step {s + 1} · t={trajectory.timesteps[s]:.0f}" for s in steps]
        scale, rows = max(2, -(-128 // frames[0].width)), 1 if len(steps) <= 5 else 2  # 5 a row at most: readable
        strip = word_map_strip(frames, heats, 0.0, vmax, scale=scale, labels=labels, rows=rows, top=LABEL_ROOM)
        strip = with_colour_bar(strip, 0.0, vmax)
        image, info = self._at_step(trajectory, i, k, vmax)
        return image, strip, info

    @handler
    def show_step(self, run: FinishedRun | None, k: float | None, word: str | None, shown: bool = True) -> tuple:
        """The word's map and info line at step k (the strip stays), while the tab is shown."""
        if not shown or not run or word is None:
            return gr.skip(), gr.skip()
        trajectory = self._trajectory(run, k)
        if not trajectory.attention:
            return gr.skip(), gr.skip()
        i = word_index(trajectory, word)
        return self._at_step(trajectory, i, self._step(trajectory, k), self._vmax(trajectory, i))

    # ------------------------------------------------------------------ helpers
    def _trajectory(self, run: FinishedRun | None, k: float | None = None) -> Trajectory:
        """The run's trajectory with each word's attention found at the strip's steps and step k (each step
        once, on the model thread)."""
        if not run:
            raise gr.Error(NO_ATTENTION)
        trajectory = run.trajectory
        steps = strip_steps(len(trajectory)) + ([] if k is None else [self._step(trajectory, k)])
        self.ctx.compute(trajectory.replay_attention, self.ctx.pipe, steps)
        return trajectory

    @staticmethod
    def _step(trajectory: Trajectory, k: float | None) -> int:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int | float)):  # an API call's "x"
            raise gr.Error(f"The step must be a number, got {str(k)[:40]!r}.")
        k = 0 if k is None or not np.isfinite(k) else int(k) - 1  # the slider's step, counted from 1
        return min(max(k, 0), len(trajectory) - 1)

    @staticmethod
    def _vmax(trajectory: Trajectory, i: int) -> float:
        """The colour scale's top: the word's largest share at the strip's steps."""
        shown = [trajectory.attention[s][i] for s in strip_steps(len(trajectory))]
        return max(float(torch.stack(shown).float().max()), 1e-6)

    def _at_step(self, trajectory: Trajectory, i: int, k: int, vmax: float) -> tuple[PIL.Image.Image, str]:
        heat = trajectory.attention[k][i].float().numpy()  # (h', w')
        x0 = self.ctx.frames.x0(trajectory, k)
        image = with_colour_bar(upscale_nearest(overlay_heatmap(x0, heat, 0.0, vmax), DISPLAY_SIDE), 0.0, vmax)
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        cell = x0.width / heat.shape[1]
        word = trajectory.words[i]
        h, w = heat.shape
        info = (
            f"**{word!r} at step {k + 1} of {len(trajectory)}** (timestep {trajectory.timesteps[k]:.0f}): at most "
            f"{heat.max():.0%} of a patch's attention (its most at the strip's steps: {vmax:.0%}, the top of the "
            f"colour bar), peak around pixel ({(col + 0.5) * cell:.0f}, {(row + 0.5) * cell:.0f}). The map is "
            f"the DiT's {h}×{w} patch grid, smoothed to the image. Bright: the patches that read this word; the "
            "shares of all words (and [CLS], [SEP]) sum to 1. Each word has its own scale, from 0 to its most: "
            "compare words by these percentages, not by brightness."
        )
        return image, info
