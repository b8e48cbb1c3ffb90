"""The Tokenizer tab: an uploaded image as a tokenizer sees it (its reconstruction, its token map, the codes it
uses, which tokens nearly flipped); click a cell to see its code, then edit the selected cells by hand (token
surgery) or let the generator repaint them under a prompt (`MMGenPipeline.inpaint`). The tokenizer is the
generator's VQ-VAE or any other picked or loaded here (`tokenizer_registry.TokenizerPicker`); the image goes through
several of them side by side in the Compare panel (`compare.CompareSection`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import gradio as gr
import numpy as np
import PIL.Image
import torch

from ..charts import usage_bars
from ..codebook import default_tile_tokens, usage_stats
from ..compare import quantization_ambiguity
from ..images import ImageLoadError, fit_to_multiple, load_image, pil_to_tensor, tensor_to_pil
from ..metrics import psnr, ssim
from ..settings import MAX_SEED, SamplingSettings, check_prompt
from ..tokenizers import Tokenizer
from ..tokens import EncodedImage
from ..viz import LABEL_ROOM, cell_size, code_histogram, token_map, upscale_nearest
from .codebook import code_number
from .compare import CompareSection, ambiguity_info, ambiguity_sheet
from .context import DISPLAY_SIDE, AppContext
from .errors import handler
from .files import uploaded_file
from .tokenizer_registry import TokenizerPicker, UploadUsage

MAX_SIDE = 256  # uploads are downscaled to this longer side: 64x64 tokens, ~0.1 s on a 2-core CPU Space
NO_IMAGE = "Tokenize an image first."
MAX_CELLS_TEXT = 32 * 1024  # characters of typed cells: every cell of a 64x64 grid, written out, fits
# After an edit the token map and usage chart show the grid as edited; the rest describes the image as encoded.
EDITED_NOTE = " The usage chart counts the edited grid; PSNR and the ambiguity maps are the encoded image's."
USAGE_BARS = 256  # codes shown in the usage chart (a photo at 256 px uses up to ~300): the most used


@dataclass(frozen=True)
class TokenGrid:
    """The session's tokenized image: its token grid as edited so far, and the cells chosen on the map."""

    tokens: list[list[int]]  # (h, w) code ids
    selected: list[list[int]] = field(default_factory=list)  # [row, col] of each selected cell
    highlight: int | None = None  # the code whose cells the map outlines
    tokenizer: str = ""  # the registry key of the tokenizer that made it ("": the generator's)
    distance: np.ndarray | None = None  # (h, w) float32: each token's distance to its code, as encoded
    margin: np.ndarray | None = None  # (h, w) float32: the distance to the runner-up code minus `distance`
    metric: str = "euclidean"


@torch.inference_mode()
def encode_with_ambiguity(tok: Tokenizer, image: PIL.Image.Image) -> tuple[EncodedImage, np.ndarray, np.ndarray]:
    """(On the model thread.) Tokenize an image whose sides are multiples of the tokenizer's factor: the
    result, and each token's distance to its code and margin to the second-nearest, (h, w) float32 each."""
    enc = tok.encode(pil_to_tensor(image)[None])
    recon = tensor_to_pil(tok.decode(enc.latents)[0])
    amb = quantization_ambiguity(enc.unquantized, tok.codebook, tok.metric)
    result = EncodedImage(image, enc.indices[0].cpu(), recon, psnr(image, recon), ssim(image, recon))
    return result, amb.distance[0].cpu().float().numpy(), amb.margin[0].cpu().float().numpy()


def usage_chart(counts: np.ndarray) -> tuple[PIL.Image.Image, str]:
    """The usage chart of a grid's code counts (K,), most used first, and a note when it leaves codes out."""
    used = int((counts > 0).sum())
    bar_width = max(2, 512 // max(1, used))  # 17 codes used: 8-px bars, not a 34-px sliver
    note = f" The usage chart shows the {USAGE_BARS} most used of its {used} codes." if used > USAGE_BARS else ""
    return usage_bars(counts, bar_width=bar_width, max_bars=USAGE_BARS, top=LABEL_ROOM), note


def repaint_settings(prompt, seed) -> SamplingSettings:
    """The repaint's prompt and seed (an empty seed field: 0), checked like any run's."""
    return SamplingSettings(prompt, seed=0 if seed is None else seed).checked()


class Tokenized(NamedTuple):
    """What a tokenize shows, in the order of the tab's outputs (`TokenizerTab.wire`)."""

    image: PIL.Image.Image | None  # the image as encoded (fitted to whole tokens), enlarged
    reconstruction: PIL.Image.Image | None  # decoded from its tokens, enlarged
    stats: str  # PSNR, SSIM, size, tokens, codes used
    token_map: PIL.Image.Image | None  # each cell coloured by its code
    usage: PIL.Image.Image | None  # how often each code occurs
    grid: TokenGrid | None  # the session's token grid, which edits change
    edited: PIL.Image.Image | None  # the edited image: none until an edit
    info: str
    uploads: object  # this visitor's `UploadUsage` (gr.skip(): left as it was)


class TokenizerTab:
    """The tab's components and handlers; `grid_state` holds the session's `TokenGrid`."""

    def __init__(self, ctx: AppContext):
        self.ctx, self.registry = ctx, ctx.tokenizers
        with gr.Tab("Tokenizer", id="tokenizer") as self.tab:
            # States live inside the tab: a component between gr.Tabs and its tabs shifts gradio's tab order
            # (the tab bar then shows a selected tab's label in another's place).
            self.grid_state = gr.State(None, time_to_live=ctx.limits.session_seconds)
            # This session's code usage over the images it tokenized or compared (read by the Codebook tab).
            self.uploads = gr.State(UploadUsage(), time_to_live=ctx.limits.session_seconds)
            gr.Markdown(
                "An image in, tokens out: the encoder gives each patch its nearest codebook code, the decoder paints "
                "the codes back. Click a cell for its code, set cells to other codes or repaint them under a prompt."
            )
            with gr.Row():
                with gr.Column():
                    # image_mode=None: gradio passes the file on unconverted; the handler reads its header first
                    self.upload = gr.Image(
                        type="filepath",
                        image_mode=None,
                        label="Your image",
                        sources=["upload", "clipboard"],
                        elem_id="upload",
                    )
                    self.picker = TokenizerPicker(self.registry, "tokenizer-picker", ctx.jobs)
                    self.tokenize_btn = gr.Button("Tokenize", variant="primary", elem_id="tokenize")
                    if examples := ctx.example_images():  # beside the upload box (the page's end is 3 screens down)
                        gr.Examples(examples, inputs=self.upload, api_name="load_example", api_visibility="private")
                self.original = gr.Image(label="As encoded", interactive=False, elem_id="original")
                self.recon = gr.Image(label="Reconstruction from tokens", interactive=False, elem_id="reconstruction")
            self.stats = gr.Markdown(elem_id="stats")
            with gr.Row():
                self.token_map = gr.Image(
                    label="Token map (a colour per code; click cells)", interactive=False, elem_id="token-map"
                )
                with gr.Column():
                    self.cell_info = gr.Markdown("Click a cell of the token map to see its code.", elem_id="cell-info")
                    self.code_tile = gr.Image(
                        label="That code alone: a flat patch of it, decoded",
                        interactive=False,
                        elem_id="code-tile",
                        height=96,
                    )
                    self.usage = gr.Image(
                        label="Codes used by this image (most used first)", interactive=False, elem_id="usage"
                    )
            with gr.Accordion("Quantisation ambiguity: which tokens nearly flipped", open=True):
                with gr.Row():
                    self.ambiguity_map = gr.Image(  # the sheet's own titles say what each map is
                        label="Per token", show_label=False, interactive=False, elem_id="ambiguity"
                    )
                    self.ambiguity_text = gr.Markdown(elem_id="ambiguity-info")
            self._build_surgery()
            self.compare = CompareSection(ctx, self.upload, self.uploads, self.read_image)

    def _build_surgery(self) -> None:
        with gr.Accordion("Token surgery: edit the selected cells", open=True):
            with gr.Row():
                # No maximum here: it depends on the tokenizer, which `set_code` checks.
                self.new_code = gr.Number(value=0, precision=0, minimum=0, label="New code id", elem_id="new-code")
                self.set_btn = gr.Button("Set selected cells to this code", elem_id="set-code")
                self.clear_btn = gr.Button("Clear selection", elem_id="clear-selection")
            with gr.Row():
                self.cells_text = gr.Textbox(label="Or type cells to select (row,col; row,col)", elem_id="cells")
                self.select_btn = gr.Button("Select these cells", elem_id="select-cells")
            with gr.Row():
                self.repaint_prompt = gr.Textbox(
                    label="Or let the generator repaint them under a prompt",
                    value="a red circle",
                    elem_id="repaint-prompt",
                )
                self.repaint_seed = gr.Number(
                    value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="repaint-seed"
                )
                self.repaint_btn = gr.Button("Repaint (inpainting)", elem_id="repaint")
            self.edited = gr.Image(label="Edited image", interactive=False, elem_id="edited")

    def wire(self) -> None:
        state, tmap, info = self.grid_state, self.token_map, self.cell_info
        inputs = [self.upload, self.picker.dropdown, self.uploads]
        outputs = [self.original, self.recon, self.stats, tmap, self.usage, state, self.edited, info, self.uploads]
        ambiguity = [self.ambiguity_map, self.ambiguity_text]
        # The upload reaches the handler as sent (preprocess=False): gradio neither opens nor decodes it first.
        self.tokenize_btn.click(self.tokenize, inputs, outputs, api_name="tokenize", preprocess=False).success(
            self.ambiguity,
            state,
            ambiguity,
            api_name="ambiguity",  # API clients call it after /tokenize
        )
        # A new upload, a clicked example or another tokenizer tokenizes at once; no upload clears the outputs.
        for event, name in ((self.upload.change, "tokenize_on_change"), (self.picker.dropdown.change, "retokenize")):
            event(
                self.tokenize_or_clear, inputs, outputs, api_name=name, api_visibility="private", preprocess=False
            ).success(self.show_ambiguity, state, ambiguity, api_visibility="private")
        # another image or tokenizer: the last one's code tile and typed cells would read as this one's
        for event in (self.upload.change, self.picker.dropdown.change):
            event(lambda: (None, ""), None, [self.code_tile, self.cells_text], api_visibility="private")
        self.compare.wire(self.picker.wire("load_tokenizer"), self.picker.dropdown)
        self.tab.select(
            lambda: (self.picker.refresh(), gr.update(choices=self.registry.choices())),
            None,
            [self.picker.dropdown, self.compare.names],
            api_visibility="private",
        )
        tmap.select(
            self.inspect_cell,
            state,
            [tmap, info, self.code_tile, state],
            api_name="inspect_cell",
            api_visibility="private",
        )
        self.clear_btn.click(self.clear_selection, state, [tmap, info, state], api_name="clear_selection")
        self.select_btn.click(
            self.select_cells, [state, self.cells_text], [tmap, info, state], api_name="select_cells"
        )
        edits = [self.edited, tmap, info, state, self.usage]  # the chart counts the grid as edited
        self.set_btn.click(self.set_code, [state, self.new_code], edits, api_name="set_code", preprocess=False)
        self.repaint_btn.click(
            self.repaint,
            [state, self.repaint_prompt, self.repaint_seed],
            edits,
            api_name="repaint",
            **self.ctx.jobs.model_event(self.refused_repaint, message_at=1),  # under the prompt (0: the state)
        )

    # ------------------------------------------------------------------ handlers
    @handler
    def tokenize(
        self, upload: dict | str | None, tokenizer: str | None = None, uploads: UploadUsage | None = None
    ) -> Tokenized:
        """Encode an uploaded image with the picked tokenizer (default: the generator's). The image's size is read
        from its header and checked before it is decoded."""
        image = self.read_image(upload)
        key = tokenizer or self.registry.own_key
        tok = self.registry.get(key)
        fitted = fit_to_multiple(image, tok.downsample_factor, MAX_SIDE)
        result, distance, margin = self.ctx.compute(encode_with_ambiguity, tok.inner, fitted)
        num_codes = tok.num_codes
        counts = code_histogram(result.tokens, num_codes)
        perplexity = usage_stats(counts)["perplexity"]
        h, w = result.tokens.shape
        stats = (
            f"**PSNR {result.psnr:.2f} dB · SSIM {result.ssim:.3f}** · {result.image.width}×{result.image.height}"
            f" px → {w}×{h} tokens · {int((counts > 0).sum())} of {num_codes} codes used · perplexity "
            f"{perplexity:.1f} · tokenizer {key}"
        )
        tmap = token_map(result.tokens, num_codes, cell=cell_size(result.tokens.shape))
        shown = [upscale_nearest(im, DISPLAY_SIDE) for im in (result.image, result.reconstruction)]
        grid = TokenGrid(result.tokens.tolist(), tokenizer=key, distance=distance, margin=margin, metric=tok.metric)
        uploads = (uploads or UploadUsage()).add(key, image, result.tokens, num_codes)
        usage, note = usage_chart(counts)
        info = "Click cells of the token map to select them." + note
        return Tokenized(*shown, stats, tmap, usage, grid, None, info, uploads)

    @handler
    def tokenize_or_clear(self, upload, tokenizer: str | None = None, uploads: UploadUsage | None = None) -> Tokenized:
        """A new upload, a clicked example or another tokenizer: tokenize at once. No upload, or one that cannot
        be used, clears the outputs and the session's grid: no edit may apply to an image no longer shown."""
        cleared = Tokenized(None, None, "", None, None, None, None, "", gr.skip())
        if not upload:
            return cleared
        try:
            return self.tokenize(upload, tokenizer, uploads)
        except gr.Error as e:
            gr.Warning(e.message)
            return cleared._replace(stats=e.message)

    def read_image(self, upload: dict | str | None) -> PIL.Image.Image:
        """The uploaded image, its size checked from its header before it is decoded, downscaled towards MAX_SIDE."""
        path = uploaded_file(upload)
        if not path:
            raise gr.Error("Upload an image first (PNG, JPEG, WebP, ...).")
        try:
            return load_image(path, max_pixels=self.ctx.limits.max_upload_pixels, max_side=MAX_SIDE)
        except ImageLoadError as e:
            raise gr.Error(f"That file can't be used: {e.reason}.") from e

    @handler
    def ambiguity(self, grid: TokenGrid | None) -> tuple:
        """The tokenized image's quantisation ambiguity: a map of each token's distance to its code and margin to
        the second-nearest code, with their legends, and a summary."""
        if not grid or grid.distance is None:
            raise gr.Error(NO_IMAGE)
        return ambiguity_sheet(grid.distance, grid.margin), ambiguity_info(grid.distance, grid.margin, grid.metric)

    @handler
    def show_ambiguity(self, grid: TokenGrid | None) -> tuple:
        return self.ambiguity(grid) if grid and grid.distance is not None else (None, "")

    def tokenizer_of(self, grid: TokenGrid) -> Tokenizer:
        return self.registry.get(grid.tokenizer)

    @handler
    def inspect_cell(self, grid: TokenGrid | None, evt: gr.SelectData) -> tuple:
        """Click on the token map: show the cell's code and its decoded tile, highlight every cell with that
        code, and toggle the cell in the selection used by token surgery."""
        if not grid:
            raise gr.Error(NO_IMAGE)
        tokens = torch.tensor(grid.tokens)
        cell = cell_size(tokens.shape)
        col, row = (int(v) // cell for v in evt.index)
        row, col = min(row, tokens.shape[0] - 1), min(col, tokens.shape[1] - 1)
        code = int(tokens[row, col])
        selected = [list(x) for x in grid.selected]
        if [row, col] in selected:
            selected.remove([row, col])
        else:
            selected.append([row, col])
        grid = dataclasses.replace(grid, selected=selected, highlight=code)
        same = int((tokens == code).sum())
        info = (
            f"Cell (row {row}, col {col}) holds **code {code}**; it occurs in {same} of {tokens.numel()} cells. "
            f"{len(selected)} cell(s) selected."
        )
        tok = self.tokenizer_of(grid)
        n = default_tile_tokens(tok.downsample_factor)  # a flat n x n grid of the code: 16 px, as in the atlas
        tile = tensor_to_pil(tok.decode_indices(torch.full((1, n, n), code))[0])
        return self.draw_map(grid), info, upscale_nearest(tile, 64), grid

    @handler
    def select_cells(self, grid: TokenGrid | None, text: str | None) -> tuple:
        """Select cells typed as 'row,col; row,col; ...' (the keyboard's and the API's way to select)."""
        if not grid:
            raise gr.Error(NO_IMAGE)
        h, w = len(grid.tokens), len(grid.tokens[0])
        text = text if isinstance(text, str) else ""
        if len(text) > MAX_CELLS_TEXT:
            raise gr.Error(f"That is {len(text):,} characters: type at most {MAX_CELLS_TEXT:,} (the {h * w} cells).")
        try:
            cells = [[int(v) for v in part.split(",")] for part in text.split(";") if part.strip()]
        except ValueError as e:
            raise gr.Error("Write cells as 'row,col; row,col', e.g. '3,4; 3,5'.") from e
        bad = [c for c in cells if len(c) != 2 or not (0 <= c[0] < h and 0 <= c[1] < w)]
        if bad or not cells:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise gr.Error(f"Cells must be 'row,col' pairs inside the grid ({h} rows, {w} columns); got {shown!r}.")
        cells = [list(c) for c in dict.fromkeys(map(tuple, cells))]  # each cell once, in the order typed
        grid = dataclasses.replace(grid, selected=cells, highlight=None)
        return self.draw_map(grid), f"{len(cells)} cell(s) selected.", grid

    @handler
    def clear_selection(self, grid: TokenGrid | None) -> tuple:
        if not grid:
            raise gr.Error(NO_IMAGE)
        grid = dataclasses.replace(grid, selected=[], highlight=None)
        return self.draw_map(grid), "Selection cleared.", grid

    @handler
    def set_code(self, grid: TokenGrid | None, code: float | None) -> tuple:
        """Token surgery: give the selected cells another code and decode the edited grid."""
        if not grid:
            raise gr.Error(NO_IMAGE)
        if not grid.selected:
            raise gr.Error("Select cells first: click them on the token map.")
        tok = self.tokenizer_of(grid)
        num_codes = tok.num_codes
        code = code_number(code, num_codes)
        tokens = torch.tensor(grid.tokens)
        for r, c in grid.selected:
            tokens[r, c] = code
        grid = dataclasses.replace(grid, tokens=tokens.tolist())
        edited = upscale_nearest(tensor_to_pil(tok.decode_indices(tokens[None])[0]), DISPLAY_SIDE)
        info = f"Set {len(grid.selected)} cell(s) to code {code}." + EDITED_NOTE
        return edited, self.draw_map(grid), info, grid, usage_chart(code_histogram(tokens, num_codes))[0]

    def refused_repaint(self, grid, prompt, seed) -> tuple[int, str] | None:
        """For the repaint's validator: (index of the input, message) when a repaint would be refused."""
        if not grid:
            return 1, NO_IMAGE
        if not grid.selected:
            return 1, "Select the cells to repaint first: click them on the token map."
        if grid.tokenizer not in ("", self.registry.own_key):
            own = self.registry.own_key
            return 1, f"The generator repaints {own}'s tokens: tokenize the image with {own} first."
        side, (h, w) = self.ctx.grid_side, (len(grid.tokens), len(grid.tokens[0]))
        if (h, w) != (side, side):
            px = self.ctx.facts.image_side
            shapes = any(Path(p).name.startswith("shapes-") for p in self.ctx.example_images())
            examples = "a shapes example" if shapes else "an example"
            return 1, (
                f"The generator repaints {side}×{side}-token grids ({px}×{px} images); this image makes {w}×{h} "
                f"tokens. Try {examples}, or upload a {px}×{px} image."
            )
        for index, check in ((1, lambda: check_prompt(prompt)), (2, lambda: repaint_settings(prompt, seed))):
            try:
                check()
            except ValueError as e:
                return index, str(e)
        return None

    @handler
    def repaint(self, grid: TokenGrid | None, prompt: str | None, seed: float | None, request: gr.Request) -> tuple:
        """Inpainting in the latent space: the generator repaints the selected cells under a prompt; every
        other cell keeps its code."""
        with self.ctx.jobs.job(request) as deadline:  # first: the visitor's slot is freed however this ends
            refused = self.refused_repaint(grid, prompt, seed)
            if refused is not None:
                raise gr.Error(refused[1])
            settings = repaint_settings(prompt, seed)
            tokens = torch.tensor(grid.tokens)
            mask = torch.zeros(tokens.shape, dtype=torch.bool)
            for r, c in grid.selected:
                mask[r, c] = True
            pipe = self.ctx.pipe.with_scheduler()
            generator, stop = settings.generator(), deadline.callback
            out = self.ctx.compute(pipe.inpaint, settings.prompt, tokens, mask, generator, callback_on_step_end=stop)
        grid = dataclasses.replace(grid, tokens=out.tokens[0].tolist())
        changed = int((out.tokens[0] != tokens).sum())
        info = f"Repainted {int(mask.sum())} selected cell(s) under {settings.prompt!r}: {changed} token(s) changed."
        usage = usage_chart(code_histogram(out.tokens[0], self.tokenizer_of(grid).num_codes))[0]
        return upscale_nearest(out.images[0], DISPLAY_SIDE), self.draw_map(grid), info + EDITED_NOTE, grid, usage

    # ------------------------------------------------------------------ drawing (no model call)
    def draw_map(self, grid: TokenGrid) -> np.ndarray:
        """The token map with the highlighted code's cells outlined and a white frame around each selected cell."""
        tokens = torch.tensor(grid.tokens)
        cell = cell_size(tokens.shape)
        num_codes = self.tokenizer_of(grid).num_codes
        image: PIL.Image.Image = token_map(tokens, num_codes, cell=cell, highlight=grid.highlight)
        arr = np.asarray(image).copy()
        for r, c in grid.selected:
            y0, x0 = r * cell, c * cell
            arr[y0 : y0 + cell, [x0, x0 + cell - 1]] = 255
            arr[[y0, y0 + cell - 1], x0 : x0 + cell] = 255
        return arr
