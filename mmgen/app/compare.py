"""Tokenizers side by side on the Tokenizer tab's image (`mmgen.compare`): reconstructions, PSNR, SSIM, detail
kept, edges in place, token grid, bits per image, compression and error maps, as a table and one sheet of
images; and the drawing of the tokenized image's quantisation ambiguity (per token: the distance to its code and
the margin to the second-nearest code, `mmgen.compare.quantization_ambiguity`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import gradio as gr
import numpy as np
from PIL import Image

from ..compare import ERROR_RANGE, MAX_SIDE, Reconstruction, common_crop, error_map, reconstruct
from ..viz import colorbar, heatmap, side_by_side
from .context import DISPLAY_SIDE, AppContext
from .errors import handler
from .tokenizer_registry import UploadUsage

MIN_COMPARED, MAX_COMPARED = 2, 4
HEADERS = [
    "tokenizer",
    "PSNR dB",
    "SSIM",
    "detail kept",
    "edges in place",
    "grid",
    "codes",
    "bits",
    "compression ×",
    "seconds",
]
LABEL_SIDE = 128  # sheet columns are enlarged to at least this width, so their labels fit
NEARLY_FLIPPED = 0.1  # a margin under this share of the median margin: the token nearly took its runner-up


class CompareSection:
    """The Tokenizer tab's "Compare tokenizers" panel; `read_image(upload)` is the tab's checked upload reader."""

    def __init__(self, ctx: AppContext, upload, uploads: gr.State, read_image: Callable[..., Image.Image]):
        self.ctx, self.registry, self.upload, self.uploads, self.read_image = (
            ctx,
            ctx.tokenizers,
            upload,
            uploads,
            read_image,
        )
        with gr.Accordion("Compare tokenizers on this image", open=True):
            with gr.Row():
                self.names = gr.Dropdown(
                    self.registry.choices(),
                    value=[self.registry.own_key, *self.registry.preloaded][:MAX_COMPARED],
                    multiselect=True,
                    max_choices=MAX_COMPARED,
                    allow_custom_value=True,  # keys loaded in other sessions too; `compare` checks them
                    label=f"Tokenizers ({MIN_COMPARED} to {MAX_COMPARED}; load more with 'Load another tokenizer')",
                    elem_id="compare-tokenizers",
                    scale=3,
                )
                self.button = gr.Button("Compare", variant="primary", elem_id="compare", scale=1)
            self.info = gr.Markdown(elem_id="compare-info")
            self.table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="compare-table")
            self.sheet = gr.Image(
                label="The image as compared, each reconstruction, and its error map",
                interactive=False,
                elem_id="compare-sheet",
            )

    def wire(self, loaded, picker: gr.Dropdown) -> None:
        """`loaded`: the picker's load event; a tokenizer just loaded joins the comparison."""
        compared = self.button.click(
            self.compare,
            [self.upload, self.names, self.uploads],
            [self.table, self.sheet, self.info, self.uploads],
            api_name="compare_tokenizers",
            preprocess=False,  # the upload arrives unopened, as for /tokenize; names as sent
        )
        loaded.success(self.with_loaded, [picker, self.names], self.names, api_visibility="private")
        # another image: the last comparison would read as this one's (one still running is stopped, or it would
        # land after the clearing)
        self.upload.change(
            lambda: ({"headers": HEADERS, "data": []}, None, ""),
            None,
            [self.table, self.sheet, self.info],
            api_visibility="private",
            cancels=[compared],
        )

    def with_loaded(self, key: str | None, names: list[str] | None):
        names = [n for n in (names or []) if n != key][: MAX_COMPARED - 1] + ([key] if key else [])
        return gr.update(choices=self.registry.choices(), value=names)

    @handler
    def compare(self, upload, names: list[str] | None, uploads: UploadUsage | None) -> tuple:
        """One image through 2-4 tokenizers at the same pixels: a table of figures, a sheet of images."""
        names = list(dict.fromkeys(n for n in (names or []) if isinstance(n, str) and n))
        if not MIN_COMPARED <= len(names) <= MAX_COMPARED:
            raise gr.Error(f"Pick {MIN_COMPARED} to {MAX_COMPARED} tokenizers to compare (got {len(names)}).")
        tokenizers = [self.registry.get(n) for n in names]
        image = self.read_image(upload)
        fitted = common_crop(image, tokenizers, MAX_SIDE)
        rows, uploads = [], uploads or UploadUsage()
        for key, tok in zip(names, tokenizers):
            row = self.ctx.compute(reconstruct, tok.inner, fitted)  # seconds: the model's time alone
            rows.append(dataclasses.replace(row, name=f"{key} ({tok.num_codes:,} codes, f{tok.downsample_factor})"))
            uploads = uploads.add(key, image, row.indices, tok.num_codes)
        multiple = math.lcm(*(t.downsample_factor for t in tokenizers))
        info = (
            f"Compared at {fitted.width}×{fitted.height} px (cropped to a multiple of {multiple} px, every "
            f"tokenizer's token) · {best_line(rows)} · errors from 0 (dark) to {ERROR_RANGE:g} of 255 (bright)  \n"
            "*detail kept*: the reconstruction's edge energy over the original's (1 = as sharp; invented texture "
            "counts too) · *edges in place*: the original's edges as drawn where they are (1 = as strong; over 1: "
            "drawn stronger; below 0: reversed)"
        )
        return {"headers": HEADERS, "data": [table_row(r) for r in rows]}, comparison_sheet(rows), info, uploads


def best_line(rows: list[Reconstruction]) -> str:
    """The best PSNR, and what it had to spend: at the same pixels a smaller token (f4 against f8) makes more
    tokens, so more bits, and a higher PSNR that says nothing of how well either was trained."""
    best, fewest = max(rows, key=lambda r: r.psnr), min(rows, key=lambda r: r.bits)
    line = f"best PSNR: **{best.name}** ({best.psnr:.2f} dB)"
    if best.bits > 1.5 * fewest.bits:
        line += (
            f", with {best.bits / fewest.bits:.1f}× the bits of {fewest.name}: at the same pixels more tokens buy "
            "detail; to compare the tokenizers themselves, give each the image at the size that makes the same grid"
        )
    return line


def table_row(r: Reconstruction) -> list:
    h, w = r.grid

    def number(x: float, digits: int):
        return None if math.isnan(x) else round(x, digits)

    return [
        r.name,
        number(r.psnr, 2),
        number(r.ssim, 3),
        number(r.detail_kept, 2),
        number(r.edges_in_place, 2),
        f"{w}×{h}",  # columns × rows, as the image's width × height
        r.num_codes,
        round(r.bits),
        number(r.compression, 1),
        round(r.seconds, 3),
    ]


def comparison_sheet(rows: list[Reconstruction]) -> Image.Image:
    """The image as compared and each reconstruction, over the error maps (the first column: their legend)."""
    fitted = rows[0].image
    scale = max(1, -(-LABEL_SIDE // fitted.width))
    errors = [heatmap(error_map(fitted, r.reconstruction), 0, ERROR_RANGE) for r in rows]
    legend = colorbar(0, ERROR_RANGE, "mean |error| (of 255)", width=min(fitted.width * scale, 256))
    top = [fitted] + [r.reconstruction for r in rows]
    big = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in top + errors]
    sheet_rows = [big[: len(top)], [legend] + big[len(top) :]]
    return side_by_side(sheet_rows, ["as compared"] + [r.name for r in rows])


# -------------------------------------------------------------------- quantisation ambiguity
def ambiguity_sheet(distance: np.ndarray, margin: np.ndarray) -> Image.Image:
    """Two (h, w) maps, a cell per token, each over its legend: the distance to the token's code (bright: far)
    and the margin to the second-nearest code (dark: nearly flipped)."""
    h, w = distance.shape
    cell = max(1, DISPLAY_SIDE // max(h, w))
    top_d = max(float(np.max(distance)), 1e-6)
    top_m = margin_scale(margin)
    maps = [heatmap(distance, 0, top_d, cell), heatmap(margin, 0, top_m, cell)]
    width = maps[0].width
    legends = [
        colorbar(0, top_d, "distance (bright: far from its code)", width=width),
        colorbar(0, top_m, "margin (dark: nearly flipped; mid: the median)", width=width),
    ]
    return side_by_side([maps, legends], ["distance to its code", "margin to the runner-up"])


def margin_scale(margin: np.ndarray) -> float:
    """The margin map's top: twice the median, so the typical token is mid-grey and only the nearly flipped ones
    dark (scaled to the largest margin, one far token made nearly every cell look dark: 229 of 256, 5 counted)."""
    return max(2 * float(np.median(margin)), 1e-6)


def ambiguity_info(distance: np.ndarray, margin: np.ndarray, metric: str) -> str:
    median_d, median_m = float(np.median(distance)), float(np.median(margin))
    near = int((margin < NEARLY_FLIPPED * median_m).sum())
    return (
        f"Per token, in the quantiser's {metric} distance: median distance to its code {median_d:.3g}, median "
        f"margin to the second-nearest code {median_m:.3g}. **{near} of {margin.size} tokens** "
        f"({near / margin.size:.1%}) have a margin under {NEARLY_FLIPPED:g} × the median: they nearly took "
        "another code."
    )
