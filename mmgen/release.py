"""Publish trained weights into a model folder: fp16 safetensors in the diffusers layout, training log beside.

    python -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base
    python -m mmgen.release --examples assets/examples    # the app's example images

fp16 halves the files (the shipped ones must stay under 10 MB); the model is loaded back in float32, and the
evaluation in the model card is run on these fp16 weights, so the figures describe exactly what ships.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from .models.vqvae import VQVAE

MAX_FILE_BYTES = 10 * 1024 * 1024


def release_vqvae(src: str | Path, out: str | Path) -> Path:
    vq = VQVAE.from_pretrained(src).to(torch.float16)
    dest = Path(out) / "vqvae"
    vq.save_pretrained(dest)
    log = Path(src).parent / "train_log.jsonl"
    if log.exists():
        shutil.copy(log, Path(out) / "vqvae_train_log.jsonl")
    for f in dest.iterdir():
        if f.stat().st_size > MAX_FILE_BYTES:
            raise SystemExit(f"{f} is {f.stat().st_size / 2**20:.1f} MB: over the 10 MB limit for shipped files")
    return dest


def _log_table(log: list[dict], every: int) -> str:
    rows = [r for r in log if "step" in r and (r["step"] % every == 0 or "val_psnr" in r)]
    lines = ["| step | loss | train PSNR (dB) | val PSNR (dB) | codebook usage | perplexity | elapsed (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['step']} | {r['loss']:.4f} | {r['psnr']:.2f} | {r.get('val_psnr', '')} | "
                     f"{r['usage']:.3f} | {r['perplexity']:.0f} | {r['elapsed_s']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def _eval_table(sh: dict, ph: dict, cb: dict) -> str:
    readable = " / ".join(f"{sh['readable_' + a]:.1%}" for a in ("color", "size", "position"))
    rows = [
        ("set", "figure", "value", "target"),
        (f"shapes-v1, {sh['n_images']} scenes, held-out stream {sh['seed']}", "PSNR",
         f"{sh['psnr']:.2f} dB (min {sh['psnr_min']:.2f})", ">= 34 dB"),
        ("", "SSIM", f"{sh['ssim']:.4f}", ""),
        ("", "colour / size / position readable", readable, "100 %"),
        ("", "shape readable / whole scene readable", f"{sh['readable_shape']:.1%} / {sh['readable_all']:.1%}", ""),
        ("", "codes used / perplexity", f"{sh['usage']:.1%} / {sh['perplexity']:.0f}", ""),
        (f"natural photos, {ph['n_images']} at 256x256, not scikit-image", "PSNR",
         f"{ph['psnr']:.2f} dB (min {ph['psnr_min']:.2f})", ">= 24 dB"),
        ("", "SSIM", f"{ph['ssim']:.4f}", ""),
        ("", "codes used / perplexity", f"{ph['usage']:.1%} / {ph['perplexity']:.0f}", ""),
        ("both sets", "codebook usage", f"{cb['usage']:.1%} ({cb['dead_codes']} unused)", ">= 95 %"),
        ("", "perplexity", f"{cb['perplexity']:.0f} of {cb['num_codes']}", f">= {cb['num_codes'] // 2}"),
    ]  # fmt: skip
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|---|---|---:|---:|")
    return "\n".join(lines)


def vqvae_card_section(out: str | Path) -> str:
    """The tokenizer's part of the model card, from the training log and evaluation JSON beside the weights."""
    out = Path(out)
    log = [json.loads(line) for line in (out / "vqvae_train_log.jsonl").read_text().splitlines()]
    header, done = log[0], next(r for r in log if r.get("done"))
    ev = json.loads((out / "eval_tokenizer.json").read_text())
    sh, ph, cb = ev["shapes"], ev["photos"], ev["codebook"]
    cfg = header["config"]
    return f"""## Tokenizer (`vqvae/`)

VQ-VAE, downsampling factor 4 (64x64 image -> 16x16 tokens), codebook of {cfg["num_codes"]} l2-normalised codes of
dimension {cfg["code_dim"]}, channels {cfg["block_channels"]}. Weights: fp16 safetensors (loaded in float32).

**Training.** `{header["command"]}` (seed {header["args"]["seed"]}), then
`python -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base`; `make train-tokenizer` runs
both. Data: shapes-v1 stream {header["args"]["seed"]} mixed with random crops (flips, 1-4x scale jitter) of the
scikit-image sample photos, {header["args"]["photo_fraction"]:.0%} photos; {done["steps"]} steps of batch
{header["args"]["batch_size"]} at {header["args"]["resolution"]}x{header["args"]["resolution"]}, AdamW lr
{header["args"]["lr"]} with cosine decay. Training time: {done["train_time_s"] / 60:.1f} min on a 2-core CPU
(no GPU).

**Evaluation** (`mmgen eval-tokenizer --model assets/mmgen-base`, held-out data; full JSON in
`eval_tokenizer.json`):

{_eval_table(sh, ph, cb)}

**Training log** (`vqvae_train_log.jsonl`; train PSNR on the current batch, val PSNR on 8 fixed images):

{_log_table(log, every=200)}
"""


CARD_HEADER = """---
license: apache-2.0
library_name: diffusers
tags: [vq-vae, image-tokenizer, cpu]
---

# mmgen-base

The small models that ship with [mmgen](../../README.md), trained from scratch on a 2-core CPU: an image
tokenizer (VQ-VAE) and, in later releases, a text-conditioned DiT over its latent grid. Load with
`VQVAE.from_pretrained("assets/mmgen-base", subfolder="vqvae")`. Every figure below was measured by the
command next to it; the training logs sit beside the weights.

"""


def write_model_card(out: str | Path) -> Path:
    """Write OUT/README.md from the training logs and evaluation results kept beside the weights."""
    path = Path(out) / "README.md"
    runs = Path(out) / "vqvae_runs.md"  # hand-written: every run tried, so the choice among them is visible
    path.write_text(CARD_HEADER + vqvae_card_section(out) + ("\n" + runs.read_text() if runs.exists() else ""))
    return path


def write_examples(out: str | Path) -> list[Path]:
    """The app's example images: held-out shapes-v1 scenes (stream 2) and two 256x256 scikit-image photos."""
    from PIL import Image

    from .data.images import load_image, skimage_photos
    from .data.shapes import shapes_sample

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in (0, 3, 5):
        shapes_sample(2, i).image.save(out / f"shapes-{i}.png")
        paths.append(out / f"shapes-{i}.png")
    photos = {p.stem: p for p in skimage_photos()}
    coffee = load_image(photos["coffee"]).resize((341, 256), Image.Resampling.LANCZOS).crop((42, 0, 298, 256))
    astronaut = load_image(photos["astronaut"]).resize((256, 256), Image.Resampling.LANCZOS)
    for name, im in (("coffee", coffee), ("astronaut", astronaut)):
        im.save(out / f"{name}.png")
        paths.append(out / f"{name}.png")
    return paths


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vqvae", help="a trained vqvae/ folder (save_pretrained output)")
    p.add_argument("--out", default="assets/mmgen-base")
    p.add_argument("--examples", help="write the app's example images to this folder")
    p.add_argument("--card", action="store_true", help="(re)write OUT/README.md from the logs and evaluations")
    args = p.parse_args()
    if args.vqvae:
        print(f"wrote {release_vqvae(args.vqvae, args.out)}")
    if args.card:
        print(f"wrote {write_model_card(args.out)}")
    if args.examples:
        print(f"wrote {len(write_examples(args.examples))} images to {args.examples}")
