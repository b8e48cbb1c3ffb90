"""`build_demo`: the explorer's page, put together from one module per tab.

Tabs build their own components and wire their own events; what they share is explicit: the `AppContext` (the
pipeline, the model's name, the limits, the model thread, the job gate), the session's last finished run
(`run_state`, written by the Generate tab and by step mode, read by the Trajectory tab; the Generate tab's overlay
and "Read it back" read the run it shows, its own `shown_run`), the Trajectory tab's
slider (moved by the Generate tab's runs), the page's tabs (the Trajectory tab draws only while it is open) and
the Generate tab's sampling controls (read by step mode). A new tab is a module with a class that builds its
components in `__init__` and wires its events in `wire()`; model calls go through `ctx.compute`, model events get
`validator=ctx.jobs.admission(...)`, handlers are wrapped in `errors.handler`. `serving.serve` launches the page
for many visitors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from .about import build_about_tab
from .caption import CaptionTab
from .codebook import CodebookTab
from .compute import ModelThread
from .context import SHIPPED_MODEL_CARD, AppContext
from .files import CACHE_CLEANUP, install_atomic_image_cache
from .generate import GenerateTab
from .jobs import JobGate
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


@dataclass(frozen=True)
class ModelPage:
    """One model the explorer offers, on a page of its own: the first at `/`, the others at `/<name>`, picked in
    the navbar. Every tab of a page works on its model; all pages share one model thread and one job gate."""

    name: str  # shown, written into run cards and token files, and the page's path
    loading: ModelLoading
    card: Path | None = None  # the About tab's Markdown (default: the shipped model's card)
    example_prompts: tuple[str, ...] = ()  # the Generate tab's examples (default: shapes-v1 prompts)
    examples_dir: Path | None = None  # the Tokenizer tab's example images (default: assets/examples)
    compared_with: tuple[str, ...] = ()  # tokenizers (names, folders, Hub ids) compared with the model's by default


def build_demo(
    pipe: MMGenPipeline | ModelLoading | list[ModelPage],
    model_name: str = "mmgen-base",
    model_card: Path | None = None,
    limits: Limits | None = None,
) -> gr.Blocks:
    """The explorer on `pipe` (tests pass a tiny one), on a pipeline still loading (`ModelLoading.start`: app.py
    serves the page first), or on several models, one page each (`ModelPage`s, the first on the front page).
    `model_name` is shown and written into run cards and token files; `model_card`: the Markdown shown in the
    About tab (default: the shipped model's card); `limits`: what one visitor may ask (default:
    `Limits.from_env()`, the Space's MMGEN_* variables)."""
    if not isinstance(pipe, list):
        loading = pipe if isinstance(pipe, ModelLoading) else ModelLoading.ready(pipe)
        pipe = [ModelPage(model_name, loading, model_card)]
    limits = limits or Limits.from_env()
    compute, jobs = ModelThread(), JobGate(limits)
    install_atomic_image_cache()
    demo = gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP)
    contexts, paths = [], unique_paths([page.name for page in pipe])
    for i, page in enumerate(pipe):
        page.loading.future.add_done_callback(
            lambda f: f.exception() or f.result().set_progress_bar_config(disable=True)
        )
        own = {"example_prompts": page.example_prompts} if page.example_prompts else {}
        own |= {"examples_dir": page.examples_dir} if page.examples_dir else {}
        own |= {"compared_with": page.compared_with}
        ctx = AppContext(page.loading, page.name, limits, compute=compute, jobs=jobs, **own)
        with gr.Blocks() as blocks:
            if len(pipe) > 1:  # the model picker
                gr.Navbar(main_page_name=pipe[0].name)
            generate = build_page(ctx, page.card)
        # The API names of the front page's events stay as they are; another page's get its prefix.
        prefix = "" if i == 0 else api_prefix(paths[i])
        for event in blocks.fns.values():
            if isinstance(event.api_name, str):
                event.api_name = f"{prefix}{event.api_name}"
        with demo if i == 0 else demo.route(page.name, paths[i]):
            blocks.render()
            # on this page's load (the load event of a page rendered into another never fires)
            generate.restore_typed_prompt(demo, api_name=f"{prefix}restore_typed_prompt")
            if i == 0:
                demo.unload(jobs.on_unload)  # a closed tab gives back its job slot, whatever its page
        contexts.append(ctx)
    demo.mmgen_context, demo.mmgen_contexts = contexts[0], contexts  # for serving (warm-up) and tests
    return demo


def api_prefix(path: str) -> str:
    """What a page's API names start with, the front page's aside: "mmgen-base-64" -> "mmgen_base_64_" (the
    README's /mmgen_base_64_generate)."""
    return path.replace("-", "_").replace(".", "_") + "_"


def page_names(models: list[str]) -> list[str]:
    """Each model's page name, shown in the navbar and written into run cards: a folder's own name, a Hub id as
    it is; two folders of one name (v1/my-model, v2/my-model) are named as given."""
    short = [Path(m).name if os.path.isdir(m) else m for m in models]
    names = [m.rstrip("/") if short.count(s) > 1 else s for m, s in zip(models, short)]
    return [n if names.count(n) == 1 else f"{n} ({names[:i].count(n) + 1})" for i, n in enumerate(names)]


def unique_paths(names: list[str]) -> list[str]:
    """Each page's path (`page_path`), made unique: "v1/my-model" and "v2/my-model" -> my-model, my-model-2."""
    paths: list[str] = []
    for name in names:
        path, n = page_path(name), 1
        while (path if n == 1 else f"{path}-{n}") in paths:
            n += 1
        paths.append(path if n == 1 else f"{path}-{n}")
    return paths


def page_path(name: str) -> str:
    """A model's page path: its name's last part, in URL-safe characters ("runs/My Model" -> "my-model")."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-") or "model"


def build_page(ctx: AppContext, model_card: Path | None) -> GenerateTab:
    """One model's header and tabs, wired; its Generate tab (its prompt is restored when the page loads)."""
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

    generate.wire()
    trajectory.wire(generate.controls, tabs)
    tokenizer.wire()
    codebook.wire()
    caption.wire()
    caption.send_from(generate.read_back, generate.shown_run, tabs)  # the image the Generate tab shows
    return generate
