"""mmgen explorer: see an image become codebook tokens and come back.

Run with `make demo` (http://127.0.0.1:7860). Set MMGEN_MODEL to a model folder or Hub repo id to explore
another model. The UI is built by `build_demo(vq)` so tests can pass a tiny model; this file holds no model
logic: handlers call `mmgen.tokens` and the pure drawing functions in `mmgen.viz`.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from mmgen.data.images import ImageLoadError, load_image
from mmgen.models.vqvae import VQVAE
from mmgen.tokens import encode_image, load_vqvae
from mmgen.viz import cell_size, code_histogram, token_map, upscale_nearest, usage_bars

TITLE = "mmgen: image tokens, hands-on"
EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"
MAX_FILE_SIZE = "10mb"
DISPLAY_SIDE = 256  # small images are shown enlarged (nearest neighbour) to at least this side
MAX_SIDE = 256  # uploads are downscaled to this longer side: 64x64 tokens, ~0.1 s on a 2-core CPU Space


def build_demo(vq: VQVAE, model_name: str = "mmgen-base") -> gr.Blocks:
    num_codes = vq.config.num_codes

    def tokenize(path: str | None):
        """Encode an uploaded image; returns the image as encoded, its reconstruction, stats, token map, tokens."""
        if not path:
            raise gr.Error("Upload an image first (PNG, JPEG, WebP, ...).")
        try:
            image = load_image(path)
            result = encode_image(vq, image, max_side=MAX_SIDE)
        except (ImageLoadError, ValueError) as e:
            raise gr.Error(str(e)) from e
        counts = code_histogram(result.tokens, num_codes)
        p = counts[counts > 0] / counts.sum()
        h, w = result.tokens.shape
        stats = (
            f"**PSNR {result.psnr:.2f} dB** · {result.image.width}×{result.image.height} px → {h}×{w} tokens · "
            f"{int((counts > 0).sum())} of {num_codes} codes used · perplexity {np.exp(-(p * np.log(p)).sum()):.1f}"
        )
        tmap = token_map(result.tokens, num_codes, cell=cell_size(result.tokens.shape))
        shown = [upscale_nearest(im, DISPLAY_SIDE) for im in (result.image, result.reconstruction)]
        return *shown, stats, tmap, usage_bars(counts), result.tokens.tolist()

    def tokenize_or_clear(path: str | None):
        return tokenize(path) if path else (None, None, "", None, None, None)

    def inspect_cell(tokens: list | None, evt: gr.SelectData):
        """Click on the token map: show that cell's code id and highlight every cell holding the same code."""
        if not tokens:
            raise gr.Error("Tokenize an image first.")
        grid = torch.tensor(tokens)
        cell = cell_size(grid.shape)
        col, row = (int(v) // cell for v in evt.index)
        row, col = min(row, grid.shape[0] - 1), min(col, grid.shape[1] - 1)
        code = int(grid[row, col])
        same = int((grid == code).sum())
        info = f"Cell (row {row}, col {col}) holds **code {code}**; it occurs in {same} of {grid.numel()} cells."
        return token_map(grid, num_codes, cell=cell, highlight=code), info

    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nModel: `{model_name}` · codebook of {num_codes} codes · "
                    f"{vq.downsample_factor}×{vq.downsample_factor} pixels per token")  # fmt: skip
        tokens_state = gr.State(None)
        with gr.Tab("Tokenizer"):
            with gr.Row():
                with gr.Column():
                    upload = gr.Image(
                        type="filepath", label="Your image", sources=["upload", "clipboard"], elem_id="upload"
                    )
                    btn = gr.Button("Tokenize", variant="primary", elem_id="tokenize")
                original = gr.Image(label="As encoded", interactive=False, elem_id="original")
                recon = gr.Image(label="Reconstruction from tokens", interactive=False, elem_id="reconstruction")
            stats = gr.Markdown(elem_id="stats")
            with gr.Row():
                tmap = gr.Image(label="Token map (click a cell)", interactive=False, elem_id="token-map")
                with gr.Column():
                    cell_info = gr.Markdown("Click a cell of the token map to see its code.", elem_id="cell-info")
                    usage = gr.Image(
                        label="Codes used by this image (most used first)", interactive=False, elem_id="usage"
                    )
            outputs = [original, recon, stats, tmap, usage, tokens_state]
            if examples:
                gr.Examples(examples, inputs=upload, api_name="load_example", api_visibility="private")

        btn.click(tokenize, upload, outputs, api_name="tokenize")
        # A new upload or a clicked example tokenizes at once; clearing the input clears the outputs.
        upload.change(tokenize_or_clear, upload, outputs, api_name="tokenize_on_change", api_visibility="private")
        tmap.select(inspect_cell, tokens_state, [tmap, cell_info], api_name="inspect_cell", api_visibility="private")
    return demo


if __name__ == "__main__":
    model = os.environ.get("MMGEN_MODEL")
    vq = load_vqvae(model)
    demo = build_demo(vq, model_name=model or "mmgen-base")
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size=MAX_FILE_SIZE, show_error=True
    )
