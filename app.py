"""mmgen explorer: generate images from text, watch them emerge step by step, see them as codebook tokens.

Run with `make demo` (http://127.0.0.1:7860). Set MMGEN_MODEL to a model folder or Hub repo id to explore
another model. The UI is built by `build_demo(pipe)` so tests can pass a tiny pipeline; this file holds no model
logic: handlers call the pipeline, `mmgen.callbacks.TrajectoryRecorder`, `mmgen.tokens` and the pure drawing
functions in `mmgen.viz`. The model loads once, at start.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from mmgen.callbacks import TrajectoryRecorder
from mmgen.data.images import ImageLoadError, load_image
from mmgen.pipeline import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, SCHEDULERS, MMGenPipeline
from mmgen.tokens import default_model, encode_image
from mmgen.viz import cell_size, code_histogram, token_map, upscale_nearest, usage_bars

TITLE = "mmgen: image tokens, hands-on"
EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"
MAX_FILE_SIZE = "10mb"
DISPLAY_SIDE = 256  # small images are shown enlarged (nearest neighbour) to at least this side
MAX_SIDE = 256  # uploads are downscaled to this longer side: 64x64 tokens, ~0.1 s on a 2-core CPU Space
MAX_STEPS = 100  # the slider's range; the pipeline accepts up to 1000
MAX_SEED = 2**31 - 1
EXAMPLE_PROMPTS = [
    "a large red circle in the top left on a white background",
    "a small blue star at the bottom on a black background",
    "a green triangle to the left of a yellow square on a gray background",
    "a purple diamond above an orange cross on a white background",
    "a cyan circle",
]


def scheduler_name(pipe: MMGenPipeline) -> str:
    """The short name (SCHEDULERS key) of the pipeline's scheduler, for the dropdown's default."""
    return next((k for k, cls in SCHEDULERS.items() if isinstance(pipe.scheduler, cls)), next(iter(SCHEDULERS)))


def build_demo(pipe: MMGenPipeline, model_name: str = "mmgen-base") -> gr.Blocks:
    vq = pipe.vqvae
    num_codes = vq.config.num_codes
    pipe.set_progress_bar_config(disable=True)

    def generate(prompt: str, steps: int, guidance: float, seed, random_seed: bool, scheduler: str):
        """Text -> image, its token map, a summary, the seed used, and every step of the trajectory."""
        if not prompt or not prompt.strip():
            raise gr.Error("Type a prompt first, e.g. 'a red circle on a white background'.")
        if random_seed or seed is None:
            seed = random.randint(0, MAX_SEED)
        seed, steps = int(seed), int(steps)
        if not 0 <= seed <= MAX_SEED:
            raise gr.Error(f"The seed must be between 0 and {MAX_SEED}.")
        recorder = TrajectoryRecorder(decode=False)
        t0 = time.perf_counter()
        try:
            run = pipe.with_scheduler(scheduler)
            out = run(prompt, num_inference_steps=steps, guidance_scale=float(guidance),
                      generator=torch.Generator().manual_seed(seed), callback_on_step_end=recorder,
                      callback_on_step_end_tensor_inputs=recorder.tensor_inputs)  # fmt: skip
        except ValueError as e:
            raise gr.Error(str(e)) from e
        seconds = time.perf_counter() - t0
        tokens = out.tokens[0]
        frames = recorder.render(pipe, cell=cell_size(tokens.shape, target=256))
        used = int((code_histogram(tokens, num_codes) > 0).sum())
        h, w = tokens.shape
        info = (f"{steps} steps of {scheduler}, guidance {float(guidance):g}, seed {seed} · {seconds:.2f} s · "
                f"{h}×{w} tokens, {used} distinct codes")  # fmt: skip
        image = upscale_nearest(out.images[0], DISPLAY_SIDE)
        tmap = token_map(tokens, num_codes, cell=cell_size(tokens.shape, target=256))
        last = len(frames) - 1
        return (image, tmap, info, seed, frames, gr.update(maximum=last, value=last), *show_step(frames, last))

    def show_step(frames: list | None, k):
        """The trajectory at step k: x_t, predicted x0, its tokens, tokens changed since step k-1; no model call."""
        if not frames:
            raise gr.Error("Generate an image first: its trajectory appears here.")
        k = min(max(int(k), 0), len(frames) - 1)
        f = frames[k]
        counts = " ".join(str(fr["n_changed"]) for fr in frames)
        info = (f"**Step {k + 1} of {len(frames)}** (timestep {f['timestep']:.0f}) · {f['n_changed']} tokens changed"
                f" since the previous step · per step: {counts}")  # fmt: skip
        x_t, x0 = (upscale_nearest(f[key], DISPLAY_SIDE) for key in ("x_t", "x0"))
        return x_t, x0, f["tokens"], f["changed"], info

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
        frames_state = gr.State(None)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[0], max_lines=3, elem_id="prompt")
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps", elem_id="steps")
                        guidance = gr.Slider(0, 10, value=DEFAULT_GUIDANCE_SCALE, step=0.5, label="Guidance",
                                             elem_id="guidance")  # fmt: skip
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                         elem_id="seed")  # fmt: skip
                        random_seed = gr.Checkbox(False, label="Random seed", elem_id="random-seed")
                        scheduler = gr.Dropdown(list(SCHEDULERS), value=scheduler_name(pipe), label="Scheduler",
                                                elem_id="scheduler")  # fmt: skip
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=prompt, label="Example prompts",
                                api_name="example_prompt", api_visibility="private")  # fmt: skip
                gen_image = gr.Image(label="Image", interactive=False, elem_id="image")
                gen_tokens = gr.Image(label="Its tokens", interactive=False, elem_id="image-tokens")
            gen_info = gr.Markdown(elem_id="generate-info")
            gr.Markdown("### Denoising trajectory\nDrag the slider over the steps of the last run.")
            step = gr.Slider(0, DEFAULT_STEPS - 1, value=0, step=1, label="Step", elem_id="step")
            with gr.Row():
                x_t = gr.Image(label="x_t (latent, 3 principal axes)", interactive=False, elem_id="x-t")
                x0 = gr.Image(label="Predicted clean image x0", interactive=False, elem_id="x0")
                x0_tokens = gr.Image(label="Its tokens", interactive=False, elem_id="x0-tokens")
                changed = gr.Image(label="Tokens changed since the previous step", interactive=False,
                                   elem_id="changed")  # fmt: skip
            step_info = gr.Markdown(elem_id="step-info")
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

        step_outputs = [x_t, x0, x0_tokens, changed, step_info]
        gen_btn.click(generate, [prompt, steps, guidance, seed, random_seed, scheduler],
                      [gen_image, gen_tokens, gen_info, seed, frames_state, step, *step_outputs],
                      api_name="generate")  # fmt: skip
        prompt.submit(generate, [prompt, steps, guidance, seed, random_seed, scheduler],
                      [gen_image, gen_tokens, gen_info, seed, frames_state, step, *step_outputs],
                      api_name="generate_on_submit", api_visibility="private")  # fmt: skip
        step.change(show_step, [frames_state, step], step_outputs, api_name="show_step")
        btn.click(tokenize, upload, outputs, api_name="tokenize")
        # A new upload or a clicked example tokenizes at once; clearing the input clears the outputs.
        upload.change(tokenize_or_clear, upload, outputs, api_name="tokenize_on_change", api_visibility="private")
        tmap.select(inspect_cell, tokens_state, [tmap, cell_info], api_name="inspect_cell", api_visibility="private")
    return demo


if __name__ == "__main__":
    model = default_model()  # MMGEN_MODEL, or the shipped assets/mmgen-base
    demo = build_demo(MMGenPipeline.from_pretrained(model), model_name=os.environ.get("MMGEN_MODEL", "mmgen-base"))
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size=MAX_FILE_SIZE, show_error=True
    )
