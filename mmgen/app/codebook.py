"""The Codebook tab: a tokenizer's codes, each decoded to a tile, a page at a time, with their usage over a reference
set and over the images this visitor tokenized; dead codes; click one to see its nearest codes and the reference
patches where it occurs. Any tokenizer of the picker (`tokenizer_registry.TokenizerPicker`): its `CodebookAtlas` is
built on first use and decodes a page's tiles when the page is first shown, so K = 16,384 codes cost what 256 do."""

from __future__ import annotations

import math
from typing import NamedTuple

import gradio as gr
import PIL.Image

from ..charts import usage_bars
from ..codebook import AtlasPage, CodebookAtlas, usage_stats
from ..viz import LABEL_ROOM, tile_at, tile_grid, upscale_nearest
from .context import AppContext
from .errors import handler
from .tokenizer_registry import TokenizerPicker, UploadUsage

CODEBOOK_COLS, CODEBOOK_SCALE = 32, 2
GRID_TOP = 2 * LABEL_ROOM  # the grid is shown at about half its size on a laptop: its label needs twice the room
SORT_BY_USAGE, SORT_BY_ID = "usage (most used first)", "code id"
ONE_PAGE_UP_TO = 512  # codebooks this small show whole, on one page (mmgen-base-64's 512 codes)
PER_PAGE = 256  # larger ones a page at a time: 256 tiles of a K = 16,384 MoVQ-like decoder in 0.3-1.6 s (bench)
MAX_USAGE_BARS = 2048
DEAD_LISTED = 24  # dead code ids written out


class CodebookPage(NamedTuple):
    """A page of the codebook, in the order of the tab's outputs (`CodebookTab.wire`)."""

    grid: PIL.Image.Image  # the page's tiles
    usage: PIL.Image.Image  # how often each code occurs in the reference set
    info: str  # the summary: codes used, perplexity, dead codes
    page: dict  # the page selector's update (bounds, value, shown when there are pages)
    code_id: dict  # the code id box's update (this tokenizer's bounds)


class CodeDetails(NamedTuple):
    """One code, in the order of the tab's outputs for a code (`CodebookTab.wire`)."""

    tile: PIL.Image.Image  # the code decoded alone, enlarged
    info: str  # its usage, rank and nearest codes
    neighbours: list  # [(tile, label)] of its nearest codes
    occurrences: list  # [(patch, "")] where it occurs in the reference set
    grid: PIL.Image.Image  # its page, the code outlined
    code: int


def per_page(num_codes: int) -> int:
    return num_codes if num_codes <= ONE_PAGE_UP_TO else PER_PAGE


def sort_key(sort_by: str | None) -> str:
    return "id" if sort_by == SORT_BY_ID else "usage"


def code_number(code, num_codes: int) -> int:
    """A code id typed or sent by an API call, checked here: gradio's own check of a Number refuses NaN and infinity
    with a blank error, so these events skip it (`preprocess=False`)."""
    whole = isinstance(code, int | float) and not isinstance(code, bool) and math.isfinite(code) and code == int(code)
    if not whole or not 0 <= int(code) < num_codes:
        raise gr.Error(f"The code id must be a whole number between 0 and {num_codes - 1}.")
    return int(code)


def page_index(page, num_pages: int) -> int:
    """The 0-based page of a 1-based page number as sent (anything else: the first), clamped to the pages."""
    try:
        number = int(float(page))
    except (TypeError, ValueError, OverflowError):
        number = 1
    return min(max(number, 1), num_pages) - 1


class CodebookTab:
    """The tab's components and handlers; atlases are shared by every session (`ctx.tokenizers.atlas`)."""

    def __init__(self, ctx: AppContext, uploads: gr.State | None = None):
        self.ctx, self.registry = ctx, ctx.tokenizers
        # The Tokenizer tab's count of this session's codes; a tab of its own when built alone.
        with gr.Tab("Codebook", id="codebook") as self.tab:
            self.uploads = uploads if uploads is not None else gr.State(UploadUsage())  # inside: see tokenizer.py
            gr.Markdown(
                "Every code of a tokenizer's codebook, each decoded alone as a small tile, with how often reference "
                "images use it. Click a tile for its nearest codes and where it occurs."
            )
            self.picker = TokenizerPicker(self.registry, "codebook-tokenizer", ctx.jobs)
            self.info = gr.Markdown(elem_id="codebook-info")
            with gr.Row():
                self.sort_by = gr.Radio(
                    [SORT_BY_USAGE, SORT_BY_ID], value=SORT_BY_USAGE, label="Sort", elem_id="sort-codes"
                )
                pages = -(-ctx.num_codes // per_page(ctx.num_codes))
                self.page = gr.Slider(
                    1,
                    max(pages, 2),
                    value=1,
                    step=1,
                    label="Page",
                    visible=pages > 1,
                    elem_id="codebook-page",
                    scale=2,
                )
            with gr.Row():
                self.grid = gr.Image(
                    label="The codes, decoded (click one)", interactive=False, elem_id="codebook-grid"
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
                    self.code_big = gr.Image(
                        label="The code alone: a flat patch of it, decoded",
                        interactive=False,
                        elem_id="code-big",
                        height=120,
                    )
                    self.code_info = gr.Markdown(elem_id="code-info")
            with gr.Row():
                # 4 a row: at 1366 px 8 a row showed 5 and a half, their labels cut
                self.neighbours = gr.Gallery(
                    label="Nearest codes", columns=4, height=240, object_fit="contain", elem_id="neighbours"
                )
                self.occurrences = gr.Gallery(
                    label="Where it occurs: reference images, its cell framed (checkered: past the image's edge)",
                    columns=4,
                    height=240,
                    object_fit="contain",
                    elem_id="occurrences",
                )
            self.usage = gr.Image(
                label="Usage over the reference set, most used first (log scale)",
                interactive=False,
                elem_id="codebook-usage",
            )

    def wire(self) -> None:
        tok, uploads = self.picker.dropdown, self.uploads
        shown = [self.grid, self.usage, self.info]
        paged = shown + [self.page, self.code_id]
        self.tab.select(self.show_codebook, [self.sort_by, tok, self.page, uploads], shown, api_name="codebook")
        self.tab.select(self.picker.refresh, None, tok, api_visibility="private")
        code_shown = [self.code_big, self.code_info, self.neighbours, self.occurrences]
        for event in (tok.change, self.sort_by.change):
            event(self.first_page, [tok, self.sort_by, uploads], paged, api_visibility="private")
            # another tokenizer's code (or the grid without its outline) would read as this one's
            event(lambda: (None, "", [], []), None, code_shown, api_visibility="private")
        # input, not release: a page number typed into the box showed only once the box lost focus; dragging
        # draws the pages passed over, the last one always (at most one waiting per visitor)
        self.page.input(
            self.turn_page,
            [tok, self.sort_by, self.page, uploads],
            paged,
            api_name="codebook_page",
            preprocess=False,  # any page number: the handler clamps it to this tokenizer's pages
            trigger_mode="always_last",
        )
        self.picker.wire("load_codebook_tokenizer", public=False)
        details = [self.code_big, self.code_info, self.neighbours, self.occurrences, self.grid, self.code_id]
        self.code_btn.click(
            self.code_details,
            [self.code_id, self.sort_by, tok, uploads],
            details,
            api_name="code_details",
            preprocess=False,  # any number: the handler says what a code id must be (`code_number`)
        ).success(
            self.page_of, [self.code_id, self.sort_by, tok, uploads], [self.page, self.info], api_visibility="private"
        )
        self.grid.select(self.click_code, [self.sort_by, tok, self.page, uploads], details, api_visibility="private")

    # ------------------------------------------------------------------ handlers (model calls: the atlas's encodes
    # and tile decodes, each on the model thread)
    @handler
    def show_codebook(
        self, sort_by: str, tokenizer: str | None = None, page: float | None = 1, uploads: UploadUsage | None = None
    ) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
        """The page of the tokenizer's codebook (whole, up to 512 codes), its usage bars and a summary."""
        return self.codebook_page(tokenizer, sort_by, page, uploads)[:3]  # grid, usage, info

    @handler
    def codebook_page(
        self, tokenizer: str | None, sort_by: str, page: float | None = 1, uploads: UploadUsage | None = None
    ) -> CodebookPage:
        """Page `page` (from 1) of the codebook, the page selector and the code id's bounds for this tokenizer."""
        key, atlas = self.atlas(tokenizer)
        size = per_page(atlas.num_codes)
        number = page_index(page, atlas.num_pages(size))
        shown = atlas.page(number, size, sort_key(sort_by))
        grid = tile_grid(
            shown.tiles, list(range(len(shown.codes))), cols=CODEBOOK_COLS, scale=CODEBOOK_SCALE, top=GRID_TOP
        )
        bars = min(atlas.num_codes, MAX_USAGE_BARS)
        usage = usage_bars(atlas.counts, max_bars=bars, bar_width=1 if bars > 512 else 2, top=LABEL_ROOM, log=True)
        info = self.summary(key, atlas, shown, sort_by, uploads)
        slider = gr.update(maximum=max(shown.num_pages, 2), value=number + 1, visible=shown.num_pages > 1)
        return CodebookPage(grid, usage, info, slider, gr.update(maximum=atlas.num_codes - 1))

    @handler
    def turn_page(
        self, tokenizer: str | None, sort_by: str, page: float | None = 1, uploads: UploadUsage | None = None
    ) -> CodebookPage:
        """`codebook_page` for the page box itself: the box's value is written back only when the page shown is
        another (clamped, or not a number). Written back always, a reply to an earlier keystroke or drag reset the
        box, and the event run after it (always the last) read that value: typing 1 then 3 ended on page 1."""
        out = self.codebook_page(tokenizer, sort_by, page, uploads)
        try:
            as_sent = float(page)
        except (TypeError, ValueError, OverflowError):
            as_sent = None
        if as_sent == out.page["value"]:
            out = out._replace(page={k: v for k, v in out.page.items() if k != "value"})
        return out

    @handler
    def first_page(self, tokenizer: str | None, sort_by: str, uploads: UploadUsage | None = None) -> CodebookPage:
        return self.codebook_page(tokenizer, sort_by, 1, uploads)

    @handler
    def code_details(
        self, code: float | None, sort_by: str, tokenizer: str | None = None, uploads: UploadUsage | None = None
    ) -> CodeDetails:
        """One code: its tile, usage and rank, its nearest codes and where it occurs; the grid shows its page,
        the code outlined."""
        key, atlas = self.atlas(tokenizer)
        code, by, size = code_number(code, atlas.num_codes), sort_key(sort_by), per_page(atlas.num_codes)
        shown = atlas.page(atlas.page_of(code, size, by), size, by)
        at = shown.codes.index(code)
        grid = tile_grid(
            shown.tiles,
            list(range(len(shown.codes))),
            cols=CODEBOOK_COLS,
            scale=CODEBOOK_SCALE,
            highlight=at,
            top=GRID_TOP,
        )
        rank = atlas.order("usage").index(code) + 1 if by == "usage" else None
        nearest = self.ctx.compute(atlas.neighbours, code)
        unit = "cos" if atlas.metric == "cosine" else "dist"
        mine = uploads.counts.get(key) if uploads else None
        info = (
            f"**Code {code}** · {int(atlas.counts[code])} occurrences in the reference set"
            + (f" (rank {rank})" if rank else "")
            + (f" · {int(mine[code])} in your uploads" if mine is not None else "")
            + " · nearest codes: "
            + ", ".join(f"{c} ({s:.2f})" for c, s in nearest)
        )
        tiles = atlas.tiles.get(c for c, _ in nearest)
        neighbours = [(upscale_nearest(t, 64), f"code {c} · {unit} {s:.2f}") for t, (c, s) in zip(tiles, nearest)]
        examples = [(upscale_nearest(im, 80), "") for im in atlas.examples(code)]
        return CodeDetails(upscale_nearest(atlas.tiles[code], 96), info, neighbours, examples, grid, code)

    @handler
    def page_of(
        self, code: float | None, sort_by: str, tokenizer: str | None = None, uploads: UploadUsage | None = None
    ) -> tuple[int, str]:
        """The page (from 1) a looked-up code is on, and the summary that names it: the slider, moved from here,
        fires no `.input`, so the summary said the page before."""
        key, atlas = self.atlas(tokenizer)
        size, by = per_page(atlas.num_codes), sort_key(sort_by)
        number = atlas.page_of(int(code), size, by)
        return number + 1, self.summary(key, atlas, atlas.page(number, size, by), sort_by, uploads)

    @handler
    def click_code(
        self, sort_by: str, tokenizer: str | None, page: float | None, uploads: UploadUsage | None, evt: gr.SelectData
    ) -> CodeDetails:
        _, atlas = self.atlas(tokenizer)
        size = per_page(atlas.num_codes)
        number = page_index(page, atlas.num_pages(size))
        codes = atlas.order(sort_key(sort_by))[number * size : (number + 1) * size]
        x, y = int(evt.index[0]), int(evt.index[1])
        i = tile_at(x, y, atlas.tiles[codes[0]].width, len(codes), CODEBOOK_COLS, CODEBOOK_SCALE, top=GRID_TOP)
        if i is None:  # a gap or the band over the tiles: a note, not an error (its overlay covered the grid)
            gr.Info("Click on a code tile.")
            return CodeDetails(*(gr.skip() for _ in CodeDetails._fields))
        return self.code_details(codes[i], sort_by, tokenizer, uploads)

    # ------------------------------------------------------------------ helpers
    def atlas(self, tokenizer: str | None) -> tuple[str, CodebookAtlas]:
        key = tokenizer if isinstance(tokenizer, str) and tokenizer else self.registry.own_key
        return key, self.registry.atlas(key)

    def summary(
        self, key: str, atlas: CodebookAtlas, shown: AtlasPage, sort_by: str, uploads: UploadUsage | None
    ) -> str:
        """Usage over the reference set and over this visitor's images, the page shown, the dead codes."""
        k, s = atlas.num_codes, atlas.stats
        lines = [
            f"**{key}** · {k:,} codes · Reference set (held-out shapes-v1 scenes, example photos): "
            f"{len(atlas.images)} images, {int(atlas.counts.sum()):,} "
            f"tokens · codes used {s['usage']:.1%} · perplexity {s['perplexity']:.1f} of {k:,} · unused in this "
            f"set {s['dead_codes']:,}"
        ]
        mine = uploads.counts.get(key) if uploads else None
        if mine is not None:
            m = usage_stats(mine)
            lines.append(
                f"Your uploads: {uploads.images[key]} image(s), {int(mine.sum()):,} tokens · codes used "
                f"{m['usage']:.1%} · perplexity {m['perplexity']:.1f}"
            )
        else:
            lines.append(
                "Your uploads: none yet with this tokenizer (tokenize or compare images on the Tokenizer tab)"
            )
        dead = atlas.dead_codes()
        if len(dead):
            listed = ", ".join(map(str, dead[:DEAD_LISTED].tolist())) + (", ..." if len(dead) > DEAD_LISTED else "")
            lines.append(
                f"Unused in the reference set (not dead codes: a model card counts over far more images): {listed}"
            )
        first, last = shown.codes[0], shown.codes[-1]
        what = f"codes {first}-{last}" if sort_key(sort_by) == "id" else "most used first"
        lines.append(f"Page {shown.number + 1} of {shown.num_pages} ({len(shown.codes)} codes, {what})")
        return "  \n".join(lines)
