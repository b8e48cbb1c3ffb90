"""mmgen explorer: generate images from text, watch them emerge step by step, and see them as codebook tokens.

Run with `make demo` (http://127.0.0.1:7860). Set MMGEN_MODEL to a model folder or Hub repo id to explore
another model. `build_demo(pipe)` builds the UI, so tests can pass a tiny pipeline. This file holds no model
logic: handlers call the pipeline (`MMGenPipeline`, `DenoisingRun`), the step callbacks in `mmgen.callbacks`,
`mmgen.tokens`, `mmgen.codebook` and the pure drawing functions in `mmgen.viz`. The model loads once, at start.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from mmgen.callbacks import LatentInpainter, TrajectoryRecorder
from mmgen.candidates import MAX_CANDIDATES
from mmgen.codebook import CodebookAtlas, reference_images, usage_stats
from mmgen.data.images import ImageLoadError, load_image
from mmgen.pipeline import (
    DEFAULT_CODEBOOK_SNAP,
    DEFAULT_GUIDANCE_INTERVAL,
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_NUM_CANDIDATES,
    DEFAULT_STEPS,
    SCHEDULERS,
    MMGenPipeline,
    native_bf16,
)
from mmgen.tokens import decode_tokens, default_model, encode_image, save_tokens
from mmgen.viz import (
    cell_size,
    code_histogram,
    filmstrip,
    overlay_tokens,
    save_gif,
    step_bars,
    tile_at,
    tile_grid,
    token_map,
    upscale_nearest,
    usage_bars,
)

TITLE = "mmgen: image tokens and diffusion, hands-on"
ROOT = Path(__file__).parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
MODEL_CARD = ROOT / "assets" / "mmgen-base" / "README.md"
MAX_FILE_SIZE = "10mb"
DISPLAY_SIDE = 256  # small images are shown enlarged (nearest neighbour) to at least this side
MAX_SIDE = 256  # uploads are downscaled to this longer side: 64x64 tokens, ~0.1 s on a 2-core CPU Space
MAX_STEPS = 100  # the sliders' range; the pipeline itself accepts up to 1000
MAX_SEED = 2**31 - 1
MAX_APP_CANDIDATES = min(8, MAX_CANDIDATES)  # the slider's range: 8 noises cost 2.8 runs' time (make bench)
PREVIEW_EVERY_S = 0.25  # live previews while generating: often enough to watch, rare enough to cost little
CODEBOOK_COLS, CODEBOOK_SCALE = 32, 2
RUN_CARD_FORMAT = "mmgen-run-v1"
EXAMPLE_PROMPTS = [
    "a large red circle in the top left on a white background",
    "a small blue star at the bottom on a black background",
    "a green triangle to the left of a yellow square on a gray background",
    "a purple diamond above an orange cross on a white background",
    "a cyan circle",
]
ABOUT = """
## How mmgen makes an image

**Stage 1: a tokenizer (VQ-VAE).** An encoder turns every 4×4 patch of pixels into a vector, and each vector
is replaced by the nearest of 512 learned *code vectors*, the codebook. A 64×64 image becomes a 16×16 grid of
code ids: its tokens. A decoder paints the image back from those ids alone. The Tokenizer tab shows this on
your own images, the Codebook tab shows what each code looks like.
([VQ-VAE, van den Oord et al. 2017](https://arxiv.org/abs/1711.00937);
[ViT-VQGAN's l2-normalised codes, Yu et al. 2021](https://arxiv.org/abs/2110.04627))

**Stage 2: a diffusion transformer (DiT).** Generation starts from pure noise in the tokenizer's latent space
(16×16 cells of 8 numbers). At every step a transformer, reading your prompt through a frozen text encoder
(all-MiniLM-L6-v2) and two small layers trained with it, predicts v, a blend of the noise and the clean image
(from which both follow); the sampler removes some of the noise. The Trajectory tab shows every step:
the noisy latent x_t, the model's guess of the clean image x0 and its tokens. At the end, each cell is snapped
to its nearest code, so the final image has an exact token grid.
([DDPM, Ho et al. 2020](https://arxiv.org/abs/2006.11239);
[DiT, Peebles & Xie 2023](https://arxiv.org/abs/2212.09748);
[v-prediction, Salimans & Ho 2022](https://arxiv.org/abs/2202.00512);
[classifier-free guidance, Ho & Salimans 2022](https://arxiv.org/abs/2207.12598);
[PixArt-α cross-attention, Chen et al. 2023](https://arxiv.org/abs/2310.00426))

**Guidance** runs the model twice per step, with and without the prompt, and pushes the result away from the
unconditional guess: higher values follow the prompt more closely and vary less.

**Codebook snap** moves the model's guess of the clean image part of the way to its nearest codes at every
step, not only at the end (0: off, 1: all the way), like dynamic thresholding but onto the codebook. The shipped
model's default was chosen on tuning prompts: it makes two-object prompts right more often (see the model card).

**Candidates** tries several starting noises: each runs through the first 30 % of the steps, the model scores its
own guess of the clean image by how well it can denoise it given the prompt (its likelihood), and the most likely
one is sampled from the start. Where the objects go is settled in those first steps, so this mostly removes
objects drawn twice. It costs about 2 runs' time at 4 candidates; the Trajectory tab shows the chosen run.
([Diffusion Classifier, Li et al. 2023](https://arxiv.org/abs/2303.16203))
"""


def _save_pil_to_cache_atomically(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """gradio's `save_pil_to_cache`, made safe for images that repeat: the cache path is the hash of the image's
    bytes, and gradio rewrites that file in place each time. When one event shows an image that another shows
    too (e.g. the last step's tokens and the final token map), a browser fetching the file while it is being
    rewritten gets a truncated or overlong response: a broken image and an h11 "Too much / Too little data for
    declared Content-Length" error in the log. Here an existing file is left alone and a new one is written
    under a temporary name and renamed into place, as gradio's own `save_file_to_cache` does."""
    pu = gr.processing_utils
    data = pu.encode_pil_to_bytes(img, format)
    path = (Path(cache_dir) / pu.hash_bytes(data) / f"{name}.{format}").resolve()
    if path.exists():
        os.utime(path)  # gradio's delete_cache ages files by time: a reused copy counts as new
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    return str(path)


gr.processing_utils.save_pil_to_cache = _save_pil_to_cache_atomically  # image outputs all go through it

SCRATCH_ROOT = Path(tempfile.gettempdir()) / "mmgen-app"
SCRATCH_MAX_AGE_S = 3600
CACHE_CLEANUP = (3600, 86400)  # gradio's delete_cache: every hour, drop cached files older than a day


def scratch_folder(prefix: str) -> Path:
    """A new folder for files handed to gradio (downloads, exports). gradio copies each one into its own cache
    (pruned by `CACHE_CLEANUP`), so these are needed only until the event returns; folders older than
    `SCRATCH_MAX_AGE_S` are removed here so that a Space that runs for weeks does not fill its disk."""
    SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in SCRATCH_ROOT.iterdir():
        try:
            if now - old.stat().st_mtime > SCRATCH_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another event removed it first
            pass
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH_ROOT))


def scheduler_name(pipe: MMGenPipeline) -> str:
    """The short name (SCHEDULERS key) of the pipeline's scheduler, for the dropdown's default."""
    return next((k for k, cls in SCHEDULERS.items() if isinstance(pipe.scheduler, cls)), next(iter(SCHEDULERS)))


def model_card_text() -> str:
    if not MODEL_CARD.exists():
        return "_No model card found._"
    text = MODEL_CARD.read_text()
    if text.startswith("---"):  # drop the YAML front matter
        text = text.split("---", 2)[2]
    return text


def build_demo(pipe: MMGenPipeline, model_name: str = "mmgen-base") -> gr.Blocks:
    vq = pipe.vqvae
    num_codes = vq.config.num_codes
    grid_side = pipe.transformer.config.sample_size  # tokens per side of a generated image
    pipe.set_progress_bar_config(disable=True)
    atlas_lock, atlas_cache = threading.Lock(), {}

    # ------------------------------------------------------------------ helpers (no model logic)
    def check_settings(prompt, steps, guidance, seed, random_seed, snap, candidates):
        if not prompt or not prompt.strip():
            raise gr.Error("Type a prompt first, e.g. 'a red circle on a white background'.")
        if steps is None or not 1 <= int(steps) <= 1000:
            raise gr.Error("Steps must be between 1 and 1000.")
        if guidance is None or float(guidance) < 0:
            raise gr.Error("Guidance must be 0 or more.")
        if random_seed or seed is None:
            seed = random.randint(0, MAX_SEED)
        if not 0 <= int(seed) <= MAX_SEED:
            raise gr.Error(f"The seed must be between 0 and {MAX_SEED}.")
        if snap is None or not 0 <= float(snap) <= 1:
            raise gr.Error("Codebook snap must be between 0 (off) and 1 (every x0 guess moved onto its codes).")
        if candidates is None or not 1 <= int(candidates) <= MAX_CANDIDATES or int(candidates) != float(candidates):
            raise gr.Error(f"Candidates must be a whole number between 1 and {MAX_CANDIDATES}.")
        return prompt.strip(), int(steps), float(guidance), int(seed), float(snap), int(candidates)

    def show_tokens(image, tokens, overlay: bool):
        big = upscale_nearest(image, DISPLAY_SIDE)
        if overlay:
            return overlay_tokens(big, tokens, num_codes)
        return token_map(tokens, num_codes, cell=cell_size(tokens.shape, target=DISPLAY_SIDE))

    def frame_view(frames: list, k: int):
        f = frames[k]
        counts = [fr["n_changed"] for fr in frames]
        info = (
            f"**Step {k + 1} of {len(frames)}** (timestep {f['timestep']:.0f}) · {f['n_changed']} of "
            f"{grid_side * grid_side} tokens changed since the previous step"
        )
        x_t, x0 = (upscale_nearest(f[key], DISPLAY_SIDE) for key in ("x_t", "x0"))
        return x_t, x0, f["tokens"], f["changed"], step_bars(counts, current=k), info

    def write_run_files(run: dict) -> list[str]:
        folder = scratch_folder("run-")
        run["image"].save(folder / "image.png")
        save_tokens(
            run["tokens"],
            folder / "tokens.json",
            model_id=model_name,
            num_codes=num_codes,
            downsample_factor=vq.downsample_factor,
        )
        (folder / "run_card.json").write_text(json.dumps(run["card"], indent=2))
        return [str(folder / n) for n in ("image.png", "tokens.json", "run_card.json")]

    def finish_run(run, recorder, settings, seconds):
        """Everything a finished run shows: image, tokens, info, downloads, and the trajectory's frames."""
        prompt, steps, guidance, seed, snap, candidates, scheduler = settings
        out = run.result()
        tokens = out.tokens[0]
        frames = recorder.render(run.pipe, cell=cell_size(tokens.shape, target=DISPLAY_SIDE))
        card = {
            "format": RUN_CARD_FORMAT,
            "model": model_name,
            "prompt": prompt,
            "negative_prompt": "",
            "seed": seed,
            "steps": steps,
            "guidance_scale": guidance,
            "scheduler": scheduler,
            "codebook_snap": run.codebook_snap,
            "num_candidates": candidates,
            "guidance_interval": None if run.guidance_interval is None else list(run.guidance_interval),
            "scheduler_config": dict(run.scheduler.config),
        }
        state = {
            "image": out.images[0],
            "tokens": tokens,
            "frames": frames,
            "card": card,
            "settings": settings,
            "latents": [s.latents for s in recorder.steps],
            "pred_x0": [s.pred_x0 for s in recorder.steps],
        }
        used = int((code_histogram(tokens, num_codes) > 0).sum())
        h, w = tokens.shape
        best_of = f", best of {candidates} noises" if candidates > 1 else ""
        info = (
            f"{steps} steps of {scheduler}, guidance {guidance:g}, codebook snap {snap:g}{best_of}, seed {seed} · "
            f"{seconds:.2f} s · {h}×{w} tokens, {used} distinct codes"
        )
        return state, info

    # ------------------------------------------------------------------ Generate
    def generate(prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates, overlay):
        """Text -> image, streamed: a preview of the predicted image after every step, then the final image,
        its tokens, downloads and the trajectory (all steps, drawn once, for the Trajectory tab). With candidates,
        the pipeline first picks the most likely of that many starting noises (before the first preview)."""
        prompt, steps, guidance, seed, snap, candidates = check_settings(
            prompt, steps, guidance, seed, random_seed, snap, candidates
        )
        if scheduler not in SCHEDULERS:
            raise gr.Error(f"Unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}.")
        t0 = time.perf_counter()
        try:
            run = pipe.with_scheduler(scheduler).stepwise(
                prompt,
                steps,
                guidance,
                codebook_snap=snap,
                generator=torch.Generator().manual_seed(seed),
                num_candidates=candidates,
            )
        except ValueError as e:
            raise gr.Error(str(e)) from e
        recorder = TrajectoryRecorder(decode=False)
        skip = [gr.skip()] * 9  # the outputs that wait for the end of the run
        last_preview = 0.0
        while not run.done:
            out = run.step()
            recorder(run.pipe, out["step"], out["timestep"], out)
            # A preview costs more than a step (an image sent to the browser): at most PREVIEW_EVERY_S apart.
            if not run.done and time.perf_counter() - last_preview >= PREVIEW_EVERY_S:
                preview = upscale_nearest(recorder.decode_step(run.pipe, out["step"])[0], DISPLAY_SIDE)
                yield preview, gr.skip(), f"step {out['step'] + 1} of {steps} ...", seed, *skip
                last_preview = time.perf_counter()
        settings = (prompt, steps, guidance, seed, snap, candidates, scheduler)
        state, info = finish_run(run, recorder, settings, time.perf_counter() - t0)
        last = len(state["frames"]) - 1
        yield (
            upscale_nearest(state["image"], DISPLAY_SIDE),
            show_tokens(state["image"], state["tokens"], overlay),
            info,
            seed,
            state,
            write_run_files(state),
            gr.Slider(maximum=max(last, 1), value=last),
            *frame_view(state["frames"], last),
        )

    def toggle_overlay(state, overlay):
        if not state:
            return None
        return show_tokens(state["image"], state["tokens"], overlay)

    def load_run_card(path):
        """A run card (JSON) -> the Generate controls, so the next run reproduces it exactly."""
        if not path:
            raise gr.Error("Choose a run card (.json) first.")
        try:
            card = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise gr.Error(f"Not a run card: {e}") from e
        if not isinstance(card, dict) or card.get("format") != RUN_CARD_FORMAT:
            raise gr.Error(f"Not an mmgen run card (expected format {RUN_CARD_FORMAT!r}).")
        try:
            prompt, steps, seed = str(card["prompt"]), int(card["steps"]), int(card["seed"])
            guidance = float(card["guidance_scale"])
            scheduler = str(card["scheduler"])
        except (KeyError, TypeError, ValueError) as e:
            raise gr.Error(f"The run card lacks a valid field: {e}") from e
        if scheduler not in SCHEDULERS:
            raise gr.Error(f"The run card names an unknown scheduler {scheduler!r}.")
        try:  # cards from before the snap existed were made without it
            snap = float(card.get("codebook_snap", 0.0))
        except (TypeError, ValueError) as e:
            raise gr.Error(f"The run card lacks a valid field: codebook_snap ({e})") from e
        candidates = card.get("num_candidates", 1)  # cards from before best-of-N used the seed's own noise
        if not isinstance(candidates, int) or isinstance(candidates, bool):
            raise gr.Error(f"The run card lacks a valid field: num_candidates ({candidates!r} is not a whole number)")
        check_settings(prompt, steps, guidance, seed, False, snap, candidates)
        note = (
            ""
            if card.get("model") == model_name
            else f" (made with model {card.get('model')!r}, this is {model_name!r})"
        )
        interval = card.get("guidance_interval")  # cards before run 30 carry none: they guided every step
        try:
            interval = None if interval is None else tuple(float(v) for v in interval)
        except (TypeError, ValueError) as e:
            raise gr.Error(f"The run card lacks a valid field: guidance_interval ({e})") from e
        if interval != DEFAULT_GUIDANCE_INTERVAL:
            note += " (made with another guidance interval than this app's, so the image may differ)"
        gr.Info(f"Run card loaded{note}: generating.")
        return prompt, steps, guidance, seed, False, scheduler, snap, candidates

    # ------------------------------------------------------------------ Trajectory
    def show_step(state, k):
        """The trajectory at step k: x_t, predicted x0, its tokens, tokens changed since step k-1. No model call."""
        if not state:
            raise gr.Error("Generate an image first: its trajectory appears here.")
        frames = state["frames"]
        return frame_view(frames, min(max(int(k), 0), len(frames) - 1))

    def move(state, k, delta: int):
        if not state:
            raise gr.Error("Generate an image first: its trajectory appears here.")
        return min(max(int(k) + delta, 0), len(state["frames"]) - 1)

    def play(state):
        """Animate the slider over every step (the frames are drawn already, so this only sends images)."""
        if not state:
            raise gr.Error("Generate an image first: its trajectory appears here.")
        for k in range(len(state["frames"])):
            yield k, *frame_view(state["frames"], k)
            time.sleep(0.15)

    def step_once(prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates, stepper):
        """Step mode: run the sampler one step per click. A new run starts when none is under way, the last one
        finished, or the settings changed; a finished run becomes the trajectory the slider scrubs."""
        key = (prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates)
        if stepper is None or stepper["run"].done or stepper["key"] != key:
            settings = check_settings(prompt, steps, guidance, seed, random_seed, snap, candidates)
            if scheduler not in SCHEDULERS:
                raise gr.Error(f"Unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}.")
            prompt_, steps_, guidance_, seed_, snap_, candidates_ = settings
            try:
                gen = torch.Generator().manual_seed(seed_)
                run = pipe.with_scheduler(scheduler).stepwise(
                    prompt_, steps_, guidance_, codebook_snap=snap_, generator=gen, num_candidates=candidates_
                )
            except ValueError as e:
                raise gr.Error(str(e)) from e
            stepper = {
                "run": run,
                "recorder": TrajectoryRecorder(decode=False),
                "key": key,
                "settings": (*settings, scheduler),
                "t0": time.perf_counter(),
            }
        run, recorder = stepper["run"], stepper["recorder"]
        out = run.step()
        recorder(run.pipe, out["step"], out["timestep"], out)
        k = out["step"]
        frame = recorder.render_step(run.pipe, len(recorder.steps) - 1, cell=cell_size((grid_side, grid_side), 256))
        counts = [int(s.changed[0].sum()) for s in recorder.steps]
        x_t, x0 = (upscale_nearest(frame[key], DISPLAY_SIDE) for key in ("x_t", "x0"))
        info = (
            f"**Step mode: step {k + 1} of {run.num_steps}** (seed {stepper['settings'][3]}) · "
            f"{frame['n_changed']} tokens changed"
        )
        state = slider = gr.skip()  # the slider keeps scrubbing the last finished run until this one ends
        if run.done:
            state, _ = finish_run(run, recorder, stepper["settings"], time.perf_counter() - stepper["t0"])
            slider = gr.Slider(maximum=max(k, 1), value=k)
            info += " · finished: the slider now scrubs this run"
        return stepper, state, slider, x_t, x0, frame["tokens"], frame["changed"], step_bars(counts, k), info

    def branch(state, k, prompt, guidance, seed):
        """Continue the current run from step k with another prompt, guidance or seed for the noise still to
        come; returns the original and the branch side by side."""
        if not state:
            raise gr.Error("Generate an image first, then branch from one of its steps.")
        k = int(k)
        prompt0, steps, _, _, snap, _, scheduler = state["settings"]
        if k >= steps - 1:
            raise gr.Error(f"Step {k + 1} is the last one: pick an earlier step to branch from.")
        prompt = (prompt or "").strip() or prompt0
        if guidance is None or float(guidance) < 0:
            raise gr.Error("Guidance must be 0 or more.")
        if seed is None or not 0 <= int(seed) <= MAX_SEED:
            raise gr.Error(f"The seed must be between 0 and {MAX_SEED}.")
        try:
            out = pipe.with_scheduler(scheduler)(
                prompt,
                num_inference_steps=steps,
                guidance_scale=float(guidance),
                latents=state["latents"][k],
                start_step=k + 1,
                codebook_snap=snap,
                prev_pred_x0=state["pred_x0"][k],  # read by self-conditioned DiTs
                generator=torch.Generator().manual_seed(int(seed)),
            )
        except ValueError as e:
            raise gr.Error(str(e)) from e
        info = (
            f"Branched after step {k + 1} of {steps}: {prompt!r}, guidance {float(guidance):g}, seed "
            f"{int(seed)}. Only Euler ancestral and DDPM draw noise from this seed."
        )
        return upscale_nearest(state["image"], DISPLAY_SIDE), upscale_nearest(out.images[0], DISPLAY_SIDE), info

    def export(state, kind: str):
        if not state:
            raise gr.Error("Generate an image first: then its trajectory can be exported.")
        frames = [f["x0"] for f in state["frames"]]
        path = scratch_folder("trajectory-")
        if kind == "gif":
            save_gif(frames, path / "trajectory.gif")
            return str(path / "trajectory.gif")
        filmstrip(frames).save(path / "trajectory.png")
        return str(path / "trajectory.png")

    # ------------------------------------------------------------------ Tokenizer
    def tokenize(path: str | None):
        """Encode an uploaded image; returns the image as encoded, its reconstruction, stats, token map, usage."""
        if not path:
            raise gr.Error("Upload an image first (PNG, JPEG, WebP, ...).")
        try:
            image = load_image(path)
            result = encode_image(vq, image, max_side=MAX_SIDE)
        except (ImageLoadError, ValueError) as e:
            raise gr.Error(str(e)) from e
        counts = code_histogram(result.tokens, num_codes)
        perplexity = usage_stats(counts)["perplexity"]
        h, w = result.tokens.shape
        stats = (
            f"**PSNR {result.psnr:.2f} dB · SSIM {result.ssim:.3f}** · {result.image.width}×{result.image.height}"
            f" px → {h}×{w} tokens · {int((counts > 0).sum())} of {num_codes} codes used · perplexity "
            f"{perplexity:.1f}"
        )
        tmap = token_map(result.tokens, num_codes, cell=cell_size(result.tokens.shape))
        shown = [upscale_nearest(im, DISPLAY_SIDE) for im in (result.image, result.reconstruction)]
        tok = {"tokens": result.tokens.tolist(), "original": result.tokens.tolist(), "selected": [], "highlight": None}
        return *shown, stats, tmap, usage_bars(counts), tok, None, "Click cells of the token map to select them."

    def tokenize_or_clear(path: str | None):
        return tokenize(path) if path else (None, None, "", None, None, None, None, "")

    def draw_map(tok: dict):
        grid = torch.tensor(tok["tokens"])
        image = token_map(grid, num_codes, cell=cell_size(grid.shape), highlight=tok["highlight"])
        cell = cell_size(grid.shape)
        arr = np.asarray(image).copy()
        for r, c in tok["selected"]:  # selected cells: a white frame
            y0, x0 = r * cell, c * cell
            arr[y0 : y0 + cell, [x0, x0 + cell - 1]] = 255
            arr[[y0, y0 + cell - 1], x0 : x0 + cell] = 255
        return arr

    def inspect_cell(tok: dict | None, evt: gr.SelectData):
        """Click on the token map: show the cell's code and its decoded tile, highlight every cell with that
        code, and toggle the cell in the selection used by token surgery."""
        if not tok:
            raise gr.Error("Tokenize an image first.")
        grid = torch.tensor(tok["tokens"])
        cell = cell_size(grid.shape)
        col, row = (int(v) // cell for v in evt.index)
        row, col = min(row, grid.shape[0] - 1), min(col, grid.shape[1] - 1)
        code = int(grid[row, col])
        selected = [list(x) for x in tok["selected"]]
        if [row, col] in selected:
            selected.remove([row, col])
        else:
            selected.append([row, col])
        tok = {**tok, "selected": selected, "highlight": code}
        same = int((grid == code).sum())
        info = (
            f"Cell (row {row}, col {col}) holds **code {code}**; it occurs in {same} of {grid.numel()} cells. "
            f"{len(selected)} cell(s) selected."
        )
        tile = decode_tokens(vq, torch.full((4, 4), code))
        return draw_map(tok), info, upscale_nearest(tile, 64), tok

    def select_cells(tok, text: str):
        """Select cells typed as 'row,col; row,col; ...' (the keyboard's and the API's way to select)."""
        if not tok:
            raise gr.Error("Tokenize an image first.")
        h, w = len(tok["tokens"]), len(tok["tokens"][0])
        try:
            cells = [[int(v) for v in part.split(",")] for part in (text or "").split(";") if part.strip()]
        except ValueError as e:
            raise gr.Error("Write cells as 'row,col; row,col', e.g. '3,4; 3,5'.") from e
        bad = [c for c in cells if len(c) != 2 or not (0 <= c[0] < h and 0 <= c[1] < w)]
        if bad or not cells:
            raise gr.Error(f"Cells must be 'row,col' pairs inside the {h}×{w} grid; got {text!r}.")
        tok = {**tok, "selected": cells, "highlight": None}
        return draw_map(tok), f"{len(cells)} cell(s) selected.", tok

    def clear_selection(tok):
        if not tok:
            raise gr.Error("Tokenize an image first.")
        tok = {**tok, "selected": [], "highlight": None}
        return draw_map(tok), "Selection cleared.", tok

    def set_code(tok, code):
        """Token surgery: give the selected cells another code and decode the edited grid."""
        if not tok:
            raise gr.Error("Tokenize an image first.")
        if not tok["selected"]:
            raise gr.Error("Select cells first: click them on the token map.")
        if code is None or not 0 <= int(code) < num_codes:
            raise gr.Error(f"The code id must be between 0 and {num_codes - 1}.")
        grid = torch.tensor(tok["tokens"])
        for r, c in tok["selected"]:
            grid[r, c] = int(code)
        tok = {**tok, "tokens": grid.tolist()}
        edited = upscale_nearest(decode_tokens(vq, grid), DISPLAY_SIDE)
        return edited, draw_map(tok), f"Set {len(tok['selected'])} cell(s) to code {int(code)}.", tok

    def repaint(tok, prompt, seed):
        """Inpainting in the latent space: the generator repaints the selected cells under a prompt; every
        other cell keeps its code."""
        if not tok:
            raise gr.Error("Tokenize an image first.")
        if not tok["selected"]:
            raise gr.Error("Select the cells to repaint first: click them on the token map.")
        grid = torch.tensor(tok["tokens"])
        if tuple(grid.shape) != (grid_side, grid_side):
            raise gr.Error(
                f"The generator paints {grid_side}×{grid_side} token grids "
                f"({grid_side * vq.downsample_factor}×{grid_side * vq.downsample_factor} px images); this "
                f"image has {grid.shape[0]}×{grid.shape[1]} tokens. Try a shapes example."
            )
        if not prompt or not prompt.strip():
            raise gr.Error("Type a prompt for the region to repaint.")
        mask = torch.zeros(grid.shape, dtype=torch.bool)
        for r, c in tok["selected"]:
            mask[r, c] = True
        gen = torch.Generator().manual_seed(int(seed or 0))
        known = vq.quantizer.indices_to_codes(grid[None]) * pipe.scaling_factor
        inpaint = LatentInpainter(known, mask, generator=gen)
        out = pipe.with_scheduler()(
            prompt.strip(),
            generator=gen,
            callback_on_step_end=inpaint,
            callback_on_step_end_tensor_inputs=inpaint.tensor_inputs,
        )
        tok = {**tok, "tokens": out.tokens[0].tolist()}
        changed = int((out.tokens[0] != grid).sum())
        info = f"Repainted {int(mask.sum())} selected cell(s) under {prompt.strip()!r}: {changed} token(s) changed."
        return upscale_nearest(out.images[0], DISPLAY_SIDE), draw_map(tok), info, tok

    # ------------------------------------------------------------------ Codebook
    def get_atlas() -> CodebookAtlas:
        with atlas_lock:  # built once, on first use, from held-out scenes and the example photos
            if "atlas" not in atlas_cache:
                photos = [load_image(p) for p in sorted(EXAMPLES_DIR.glob("*.png")) if "shapes" not in p.name]
                atlas_cache["atlas"] = CodebookAtlas.build(vq, reference_images(photos=photos))
            return atlas_cache["atlas"]

    def show_codebook(sort_by: str):
        atlas = get_atlas()
        s = atlas.stats
        info = (
            f"Reference set: {len(atlas.images)} images, {int(atlas.counts.sum()):,} tokens · codes used "
            f"{s['usage']:.1%} · perplexity {s['perplexity']:.1f} of {num_codes} · dead codes "
            f"{s['dead_codes']}"
        )
        order = atlas.order("usage" if sort_by.startswith("usage") else "id")
        grid = tile_grid(atlas.tiles, order, cols=CODEBOOK_COLS, scale=CODEBOOK_SCALE)
        return grid, usage_bars(atlas.counts, max_bars=num_codes, bar_width=1), info

    def code_details(code: int, sort_by: str):
        atlas = get_atlas()
        if code is None or not 0 <= int(code) < num_codes:
            raise gr.Error(f"The code id must be between 0 and {num_codes - 1}.")
        code = int(code)
        order = atlas.order("usage" if sort_by.startswith("usage") else "id")
        grid = tile_grid(atlas.tiles, order, cols=CODEBOOK_COLS, scale=CODEBOOK_SCALE, highlight=code)
        rank = order.index(code) + 1 if sort_by.startswith("usage") else None
        info = (
            f"**Code {code}** · {int(atlas.counts[code])} occurrences in the reference set"
            + (f" (rank {rank})" if rank else "")
            + " · nearest codes: "
            + ", ".join(f"{c} ({s:.2f})" for c, s in atlas.neighbours(code))
        )
        neighbours = [
            (upscale_nearest(atlas.tiles[c], 64), f"code {c} · cos {s:.2f}") for c, s in atlas.neighbours(code)
        ]
        examples = [(upscale_nearest(im, 80), "") for im in atlas.examples(code)]
        return upscale_nearest(atlas.tiles[code], 96), info, neighbours, examples, grid, code

    def click_code(sort_by: str, evt: gr.SelectData):
        atlas = get_atlas()
        order = atlas.order("usage" if sort_by.startswith("usage") else "id")
        i = tile_at(
            int(evt.index[0]), int(evt.index[1]), atlas.tiles[0].width, len(order), CODEBOOK_COLS, CODEBOOK_SCALE
        )
        if i is None:
            raise gr.Error("Click on a code tile.")
        return code_details(order[i], sort_by)

    # ------------------------------------------------------------------ layout
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(
            f"# {TITLE}\nModel: `{model_name}` · codebook of {num_codes} codes · "
            f"{vq.downsample_factor}×{vq.downsample_factor} pixels per token · "
            f"{grid_side}×{grid_side} tokens per generated image · DiT matmuls in "
            f"{'bf16' if getattr(pipe, '_autocast_dtype', None) else 'float32'}"
        )
        run_state, stepper_state, tok_state = gr.State(None), gr.State(None), gr.State(None)

        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[0], max_lines=3, elem_id="prompt")
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps", elem_id="steps")
                        guidance = gr.Slider(
                            0, 10, value=DEFAULT_GUIDANCE_SCALE, step=0.5, label="Guidance", elem_id="guidance"
                        )
                        snap = gr.Slider(
                            0,
                            1,
                            value=DEFAULT_CODEBOOK_SNAP,
                            step=0.05,
                            label="Codebook snap",
                            info="How far each step's x0 guess moves to its nearest codes (0: off)",
                            elem_id="codebook-snap",
                        )
                        candidates = gr.Slider(
                            1,
                            MAX_APP_CANDIDATES,
                            value=DEFAULT_NUM_CANDIDATES,
                            step=1,
                            label="Candidates",
                            info="Starting noises tried; the likeliest is kept",
                            elem_id="candidates",
                        )
                    with gr.Row():
                        seed = gr.Number(
                            value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed"
                        )
                        random_seed = gr.Checkbox(False, label="Random seed", elem_id="random-seed")
                        scheduler = gr.Dropdown(
                            list(SCHEDULERS), value=scheduler_name(pipe), label="Scheduler", elem_id="scheduler"
                        )
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples(
                        [[p] for p in EXAMPLE_PROMPTS],
                        inputs=prompt,
                        label="Example prompts",
                        api_name="example_prompt",
                        api_visibility="private",
                    )
                with gr.Column():
                    gen_image = gr.Image(label="Image", interactive=False, elem_id="image")
                    gen_info = gr.Markdown(elem_id="generate-info")
                with gr.Column():
                    gen_tokens = gr.Image(label="Its tokens", interactive=False, elem_id="image-tokens")
                    overlay = gr.Checkbox(False, label="Overlay the token grid on the image", elem_id="overlay")
            with gr.Row():
                downloads = gr.File(
                    label="Downloads: image, tokens, run card",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
                card_upload = gr.File(
                    label="Load a run card to reproduce it", file_types=[".json"], elem_id="run-card"
                )

        with gr.Tab("Trajectory", id="trajectory"):
            gr.Markdown(
                "Every step of the last run: the noisy latent x_t (its 8 channels projected on the codebook's"
                " 3 main axes), the model's guess of the clean image x0, that guess's tokens, and which "
                "tokens changed since the previous step."
            )
            with gr.Row():
                prev_btn = gr.Button("◀ Previous", elem_id="prev", size="sm")
                play_btn = gr.Button("▶ Play", elem_id="play", size="sm")
                next_btn = gr.Button("Next ▶", elem_id="next", size="sm")
                step_btn = gr.Button("Step mode: run one step", variant="secondary", elem_id="step-once", size="sm")
            step = gr.Slider(0, DEFAULT_STEPS - 1, value=0, step=1, label="Step", elem_id="step")
            with gr.Row():
                x_t = gr.Image(label="x_t", interactive=False, elem_id="x-t")
                x0 = gr.Image(label="Predicted clean image x0", interactive=False, elem_id="x0")
                x0_tokens = gr.Image(label="Its tokens", interactive=False, elem_id="x0-tokens")
                changed = gr.Image(
                    label="Tokens changed since the previous step", interactive=False, elem_id="changed"
                )
            with gr.Row():
                change_plot = gr.Image(label="Tokens changed per step", interactive=False, elem_id="change-plot")
                step_info = gr.Markdown(elem_id="step-info")
            with gr.Accordion("Branch from this step", open=False):
                with gr.Row():
                    branch_prompt = gr.Textbox(label="Prompt (empty: the same)", elem_id="branch-prompt")
                    branch_guidance = gr.Slider(
                        0, 10, value=DEFAULT_GUIDANCE_SCALE, step=0.5, label="Guidance", elem_id="branch-guidance"
                    )
                    branch_seed = gr.Number(
                        value=1,
                        precision=0,
                        minimum=0,
                        maximum=MAX_SEED,
                        label="Seed of the noise to come",
                        elem_id="branch-seed",
                    )
                    branch_btn = gr.Button("Branch", elem_id="branch")
                with gr.Row():
                    original_out = gr.Image(label="Original", interactive=False, elem_id="branch-original")
                    branch_out = gr.Image(label="Branch", interactive=False, elem_id="branch-result")
                branch_info = gr.Markdown(elem_id="branch-info")
            with gr.Row():
                gif_btn = gr.Button("Export GIF", size="sm", elem_id="export-gif")
                strip_btn = gr.Button("Export filmstrip PNG", size="sm", elem_id="export-strip")
                export_file = gr.File(label="Export", interactive=False, elem_id="export-file")

        with gr.Tab("Tokenizer", id="tokenizer"):
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
                tmap = gr.Image(label="Token map (click cells)", interactive=False, elem_id="token-map")
                with gr.Column():
                    cell_info = gr.Markdown("Click a cell of the token map to see its code.", elem_id="cell-info")
                    code_tile = gr.Image(label="That code, decoded", interactive=False, elem_id="code-tile", height=96)
                    usage = gr.Image(
                        label="Codes used by this image (most used first)", interactive=False, elem_id="usage"
                    )
            with gr.Accordion("Token surgery: edit the selected cells", open=True):
                with gr.Row():
                    new_code = gr.Number(
                        value=0, precision=0, minimum=0, maximum=num_codes - 1, label="New code id", elem_id="new-code"
                    )
                    set_btn = gr.Button("Set selected cells to this code", elem_id="set-code")
                    clear_btn = gr.Button("Clear selection", elem_id="clear-selection")
                with gr.Row():
                    cells_text = gr.Textbox(label="Or type cells to select (row,col; row,col)", elem_id="cells")
                    select_btn = gr.Button("Select these cells", elem_id="select-cells")
                with gr.Row():
                    repaint_prompt = gr.Textbox(
                        label="Or let the generator repaint them under a prompt",
                        value="a red circle",
                        elem_id="repaint-prompt",
                    )
                    repaint_seed = gr.Number(
                        value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="repaint-seed"
                    )
                    repaint_btn = gr.Button("Repaint (inpainting)", elem_id="repaint")
                edited = gr.Image(label="Edited image", interactive=False, elem_id="edited")
            if examples:
                gr.Examples(examples, inputs=upload, api_name="load_example", api_visibility="private")

        with gr.Tab("Codebook", id="codebook") as codebook_tab:
            codebook_info = gr.Markdown(elem_id="codebook-info")
            sort_by = gr.Radio(
                ["usage (most used first)", "code id"],
                value="usage (most used first)",
                label="Sort",
                elem_id="sort-codes",
            )
            with gr.Row():
                codebook_grid = gr.Image(
                    label="Every code, decoded (click one)", interactive=False, elem_id="codebook-grid"
                )
                with gr.Column():
                    code_id = gr.Number(
                        value=0, precision=0, minimum=0, maximum=num_codes - 1, label="Code id", elem_id="code-id"
                    )
                    code_btn = gr.Button("Show code", elem_id="show-code")
                    code_big = gr.Image(label="Code", interactive=False, elem_id="code-big", height=120)
                    code_info = gr.Markdown(elem_id="code-info")
            with gr.Row():
                neighbours = gr.Gallery(label="Nearest codes", columns=8, height=120, elem_id="neighbours")
                occurrences = gr.Gallery(
                    label="Where it occurs (reference images)", columns=8, height=120, elem_id="occurrences"
                )
            usage_hist = gr.Image(
                label="Usage over the reference set, most used first", interactive=False, elem_id="codebook-usage"
            )

        with gr.Tab("About", id="about"):
            gr.Markdown(ABOUT, elem_id="about")
            with gr.Accordion("Model card", open=False):
                gr.Markdown(model_card_text(), elem_id="model-card")

        # ------------------------------------------------------------------ events
        gen_inputs = [prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates, overlay]
        step_views = [x_t, x0, x0_tokens, changed, change_plot, step_info]
        gen_outputs = [gen_image, gen_tokens, gen_info, seed, run_state, downloads, step, *step_views]
        gen_btn.click(generate, gen_inputs, gen_outputs, api_name="generate", concurrency_id="model")
        prompt.submit(
            generate,
            gen_inputs,
            gen_outputs,
            api_name="generate_on_submit",
            api_visibility="private",
            concurrency_id="model",
        )
        overlay.change(toggle_overlay, [run_state, overlay], gen_tokens, api_name="toggle_overlay")
        card_upload.upload(
            load_run_card,
            card_upload,
            [prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates],
            api_name="load_run_card",
        ).success(
            generate,
            gen_inputs,
            gen_outputs,
            api_name="generate_from_card",
            api_visibility="private",
            concurrency_id="model",
        )

        step.change(show_step, [run_state, step], step_views, api_name="show_step")
        prev_btn.click(lambda s, k: move(s, k, -1), [run_state, step], step, api_name="previous_step")
        next_btn.click(lambda s, k: move(s, k, +1), [run_state, step], step, api_name="next_step")
        play_btn.click(
            play, run_state, [step, *step_views], api_name="play", concurrency_id="play", concurrency_limit=4
        )
        step_btn.click(
            step_once,
            [prompt, steps, guidance, seed, random_seed, scheduler, snap, candidates, stepper_state],
            [stepper_state, run_state, step, *step_views],
            api_name="step_once",
            concurrency_id="model",
        )
        branch_btn.click(
            branch,
            [run_state, step, branch_prompt, branch_guidance, branch_seed],
            [original_out, branch_out, branch_info],
            api_name="branch",
            concurrency_id="model",
        )
        gif_btn.click(lambda s: export(s, "gif"), run_state, export_file, api_name="export_gif")
        strip_btn.click(lambda s: export(s, "png"), run_state, export_file, api_name="export_filmstrip")

        tok_outputs = [original, recon, stats, tmap, usage, tok_state, edited, cell_info]
        btn.click(tokenize, upload, tok_outputs, api_name="tokenize")
        # A new upload or a clicked example tokenizes at once; clearing the input clears the outputs.
        upload.change(tokenize_or_clear, upload, tok_outputs, api_name="tokenize_on_change", api_visibility="private")
        tmap.select(
            inspect_cell,
            tok_state,
            [tmap, cell_info, code_tile, tok_state],
            api_name="inspect_cell",
            api_visibility="private",
        )
        clear_btn.click(clear_selection, tok_state, [tmap, cell_info, tok_state], api_name="clear_selection")
        select_btn.click(select_cells, [tok_state, cells_text], [tmap, cell_info, tok_state], api_name="select_cells")
        set_btn.click(set_code, [tok_state, new_code], [edited, tmap, cell_info, tok_state], api_name="set_code")
        repaint_btn.click(
            repaint,
            [tok_state, repaint_prompt, repaint_seed],
            [edited, tmap, cell_info, tok_state],
            api_name="repaint",
            concurrency_id="model",
        )

        codebook_outputs = [codebook_grid, usage_hist, codebook_info]
        codebook_tab.select(show_codebook, sort_by, codebook_outputs, api_name="codebook")
        sort_by.change(show_codebook, sort_by, codebook_outputs, api_name="sort_codebook", api_visibility="private")
        details = [code_big, code_info, neighbours, occurrences, codebook_grid, code_id]
        code_btn.click(code_details, [code_id, sort_by], details, api_name="code_details")
        codebook_grid.select(click_code, sort_by, details, api_name="click_code", api_visibility="private")
    return demo


if __name__ == "__main__":
    model = default_model()  # MMGEN_MODEL, or the shipped assets/mmgen-base
    pipe = MMGenPipeline.from_pretrained(model)
    # bf16 matmuls where the CPU has them natively: ~1.7x faster, same measured accuracy (see the README's Speed).
    # MMGEN_BF16=0 forces float32, MMGEN_BF16=1 forces bf16.
    if os.environ.get("MMGEN_BF16", "auto") == "1" or (
        os.environ.get("MMGEN_BF16", "auto") == "auto" and native_bf16()
    ):
        pipe.set_autocast(torch.bfloat16)
    demo = build_demo(pipe, model_name=os.environ.get("MMGEN_MODEL", "mmgen-base"))
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), max_file_size=MAX_FILE_SIZE, show_error=True
    )
