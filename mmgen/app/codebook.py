"""The Codebook tab: every code of the tokenizer, decoded to a tile, with its usage over a reference set; click one
to see its nearest codes and where it occurs. The `CodebookAtlas` is built once, on first use."""

from __future__ import annotations

import threading

import gradio as gr
import PIL.Image

from ..codebook import CodebookAtlas, reference_images
from ..data.images import load_image
from ..viz import tile_at, tile_grid, upscale_nearest, usage_bars
from .context import AppContext
from .errors import handler

CODEBOOK_COLS, CODEBOOK_SCALE = 32, 2
SORT_BY_USAGE, SORT_BY_ID = "usage (most used first)", "code id"


class CodebookTab:
    """The tab's components and handlers; the atlas is shared by every session."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self._atlas: CodebookAtlas | None = None
        self._atlas_lock = threading.Lock()
        with gr.Tab("Codebook", id="codebook") as self.tab:
            self.info = gr.Markdown(elem_id="codebook-info")
            self.sort_by = gr.Radio(
                [SORT_BY_USAGE, SORT_BY_ID], value=SORT_BY_USAGE, label="Sort", elem_id="sort-codes"
            )
            with gr.Row():
                self.grid = gr.Image(
                    label="Every code, decoded (click one)", interactive=False, elem_id="codebook-grid"
                )
                with gr.Column():
                    self.code_id = gr.Number(
                        value=0,
                        precision=0,
                        minimum=0,
                        maximum=ctx.num_codes - 1,
                        label="Code id",
                        elem_id="code-id",
                    )
                    self.code_btn = gr.Button("Show code", elem_id="show-code")
                    self.code_big = gr.Image(label="Code", interactive=False, elem_id="code-big", height=120)
                    self.code_info = gr.Markdown(elem_id="code-info")
            with gr.Row():
                self.neighbours = gr.Gallery(label="Nearest codes", columns=8, height=120, elem_id="neighbours")
                self.occurrences = gr.Gallery(
                    label="Where it occurs (reference images)", columns=8, height=120, elem_id="occurrences"
                )
            self.usage = gr.Image(
                label="Usage over the reference set, most used first", interactive=False, elem_id="codebook-usage"
            )

    def wire(self) -> None:
        outputs = [self.grid, self.usage, self.info]
        self.tab.select(self.show_codebook, self.sort_by, outputs, api_name="codebook")
        self.sort_by.change(
            self.show_codebook, self.sort_by, outputs, api_name="sort_codebook", api_visibility="private"
        )
        details = [self.code_big, self.code_info, self.neighbours, self.occurrences, self.grid, self.code_id]
        self.code_btn.click(self.code_details, [self.code_id, self.sort_by], details, api_name="code_details")
        self.grid.select(self.click_code, self.sort_by, details, api_name="click_code", api_visibility="private")

    def atlas(self) -> CodebookAtlas:
        with self._atlas_lock:  # built once, on first use, from held-out scenes and the example photos
            if self._atlas is None:
                paths = sorted(self.ctx.examples_dir.glob("*.png"))
                photos = [load_image(p) for p in paths if "shapes" not in p.name]
                self._atlas = self.ctx.compute(CodebookAtlas.build, self.ctx.vq, reference_images(photos=photos))
            return self._atlas

    # ------------------------------------------------------------------ handlers (their tiles are decoded on the
    # model thread: the atlas decodes a code's tile when first asked for)
    @handler
    def show_codebook(self, sort_by: str) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
        return self.ctx.compute(self._show_codebook, sort_by)

    @handler
    def code_details(self, code: float | None, sort_by: str) -> tuple:
        return self.ctx.compute(self._code_details, code, sort_by)

    @handler
    def click_code(self, sort_by: str, evt: gr.SelectData) -> tuple:
        return self.ctx.compute(self._click_code, sort_by, evt)

    def _show_codebook(self, sort_by: str) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
        atlas, num_codes = self.atlas(), self.ctx.num_codes
        s = atlas.stats
        info = (
            f"Reference set: {len(atlas.images)} images, {int(atlas.counts.sum()):,} tokens · codes used "
            f"{s['usage']:.1%} · perplexity {s['perplexity']:.1f} of {num_codes} · dead codes "
            f"{s['dead_codes']}"
        )
        grid = tile_grid(atlas.tiles, self.order(sort_by), cols=CODEBOOK_COLS, scale=CODEBOOK_SCALE)
        return grid, usage_bars(atlas.counts, max_bars=num_codes, bar_width=1), info

    def _code_details(self, code: float | None, sort_by: str) -> tuple:
        """One code: its tile, its usage and rank, its nearest codes and where it occurs; the grid highlights it."""
        atlas, num_codes = self.atlas(), self.ctx.num_codes
        if code is None or not 0 <= int(code) < num_codes:
            raise gr.Error(f"The code id must be between 0 and {num_codes - 1}.")
        code = int(code)
        order = self.order(sort_by)
        grid = tile_grid(atlas.tiles, order, cols=CODEBOOK_COLS, scale=CODEBOOK_SCALE, highlight=code)
        rank = order.index(code) + 1 if sort_by.startswith("usage") else None
        nearest = atlas.neighbours(code)
        info = (
            f"**Code {code}** · {int(atlas.counts[code])} occurrences in the reference set"
            + (f" (rank {rank})" if rank else "")
            + " · nearest codes: "
            + ", ".join(f"{c} ({s:.2f})" for c, s in nearest)
        )
        neighbours = [(upscale_nearest(atlas.tiles[c], 64), f"code {c} · cos {s:.2f}") for c, s in nearest]
        examples = [(upscale_nearest(im, 80), "") for im in atlas.examples(code)]
        return upscale_nearest(atlas.tiles[code], 96), info, neighbours, examples, grid, code

    def _click_code(self, sort_by: str, evt: gr.SelectData) -> tuple:
        atlas, order = self.atlas(), self.order(sort_by)
        x, y = int(evt.index[0]), int(evt.index[1])
        i = tile_at(x, y, atlas.tiles[0].width, len(order), CODEBOOK_COLS, CODEBOOK_SCALE)
        if i is None:
            raise gr.Error("Click on a code tile.")
        return self._code_details(order[i], sort_by)

    def order(self, sort_by: str) -> list[int]:
        return self.atlas().order("usage" if sort_by.startswith("usage") else "id")
