"""Publish trained weights into a model folder: fp16 safetensors in the diffusers layout, training log beside.

    python -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base

fp16 halves the files (the shipped ones must stay under 10 MB); the model is loaded back in float32, and the
evaluation in the model card is run on these fp16 weights, so the figures describe exactly what ships.
"""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vqvae", required=True, help="a trained vqvae/ folder (save_pretrained output)")
    p.add_argument("--out", default="assets/mmgen-base")
    args = p.parse_args()
    print(f"wrote {release_vqvae(args.vqvae, args.out)}")
