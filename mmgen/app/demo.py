"""`build_demo`: the explorer's page, put together from one module per tab.

Tabs build their own components and wire their own events; what they share is explicit: the `AppContext` (the
pipeline, the model's name, the limits, the model thread, the job gate), the session's last finished run
(`run_state`, written by the Generate tab and by step mode, read by the Trajectory tab), the Trajectory tab's
slider and views (filled by the Generate tab's runs) and the Generate tab's sampling controls (read by step
mode). A new tab is a module with a class that builds its components in `__init__` and wires its events in
`wire()`; model calls go through `ctx.compute`, model events get `validator=ctx.jobs.admission(...)`, handlers
are wrapped in `errors.handler`. `serving.serve` launches the page for many visitors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from .about import build_about_tab
from .caption import CaptionTab
from .codebook import CodebookTab
from .context import SHIPPED_MODEL_CARD, AppContext
from .files import CACHE_CLEANUP, install_atomic_image_cache
from .generate import GenerateTab
from .limits import Limits
from .loading import ModelLoading
from .tokenizer import TokenizerTab
from .trajectory import TrajectoryTab

if TYPE_CHECKING:
    from ..pipeline import MMGenPipeline

TITLE = "mmgen: image tokens and diffusion, hands-on"


def header(ctx: AppContext) -> str:
    f, side = ctx.facts.downsample_factor, ctx.grid_side
    return (
        f"# {TITLE}\nModel: `{ctx.model_name}` · codebook of {ctx.num_codes} codes · "
        f"{f}×{f} pixels per token · {side}×{side} tokens per generated image · DiT matmuls in "
        f"{'bf16' if ctx.facts.bf16 else 'float32'}"
    )


def build_demo(
    pipe: MMGenPipeline | ModelLoading,
    model_name: str = "mmgen-base",
    model_card: Path | None = None,
    limits: Limits | None = None,
) -> gr.Blocks:
    """The explorer on `pipe` (tests pass a tiny one), or on a pipeline still loading (`ModelLoading.start`:
    app.py serves the page first). `model_name` is shown and written into run cards and token files;
    `model_card`: the Markdown shown in the About tab (default: the shipped model's card); `limits`: what one
    visitor may ask (default: `Limits.from_env()`, the Space's MMGEN_* variables)."""
    loading = pipe if isinstance(pipe, ModelLoading) else ModelLoading.ready(pipe)
    loading.future.add_done_callback(lambda f: f.exception() or f.result().set_progress_bar_config(disable=True))
    ctx = AppContext(loading, model_name, limits or Limits.from_env())
    install_atomic_image_cache()
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(header(ctx))
        # The session's last finished run (runs.FinishedRun), dropped this long after it was made.
        run_state = gr.State(None, time_to_live=ctx.limits.session_seconds)
        with gr.Tabs() as tabs:
            generate = GenerateTab(ctx, run_state)
            trajectory = TrajectoryTab(ctx, run_state)
            tokenizer = TokenizerTab(ctx)
            codebook = CodebookTab(ctx, tokenizer.uploads)  # usage over the images this session tokenized
            caption = CaptionTab(ctx)
            build_about_tab(model_card or SHIPPED_MODEL_CARD)

        generate.wire(trajectory.step, trajectory.views)
        trajectory.wire(generate.controls)
        tokenizer.wire()
        codebook.wire()
        caption.wire()
        caption.send_from(generate.read_back, run_state, tabs)
        demo.unload(ctx.jobs.on_unload)  # a closed tab gives back its job slot
    demo.mmgen_context = ctx  # for serving (warm-up) and tests
    return demo
