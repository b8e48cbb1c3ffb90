"""`mmgen eval-judge`: the scene judge against answers known in advance, lenient and strict side by side.

    mmgen eval-judge --out docs/judge.json        # held-out streams; `--tuning` reads the streams settings came from

Right images must read right: held-out shapes-v1 renders, and the shipped tokenizer's reconstructions of them (a
person still names a shape whose tips the tokenizer softened). Wrong drawings (`mmgen.eval.deformed`) must not
read as the shape they break: the share that still does is the judge's leniency. Both at 64 px and, box-downsampled,
at 128 px.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from ..data.shapes import shapes_sample
from . import write_results
from .deformed import DEFORMATIONS, deformed_sample
from .judge import read_scene, score_scene

STREAMS = {"tuning": {"renders": 7, "drawings": 0}, "held-out": {"renders": 2, "drawings": 1}}


def right_images(renders: list, images: list[Image.Image], strict: bool) -> float:
    """The share of images read right in every attribute (their labels: the renders')."""
    return float(np.mean([score_scene(read_scene(im, strict), s.labels)["all"] for im, s in zip(images, renders)]))


def named_broken(kind: str, stream: int, n: int, scale: int, strict: bool) -> float:
    """The share of `n` wrong drawings of `kind` read as the shape they break."""
    named = 0
    for i in range(n):
        sample = deformed_sample(kind, stream, i, scale)
        broken = sample.labels["objects"][0]["shape"]
        named += any(o["shape"] == broken for o in read_scene(sample.image, strict)["objects"])
    return named / n


def evaluate(model: str, split: str = "held-out", n_renders: int = 200, n_drawings: int = 60) -> dict:
    """{"lenient"/"strict": {"renders", "reconstructions": share read right; "64px"/"128px": {kind: share
    read as the broken shape}}}."""
    from ..models.vqvae import VQVAE
    from .eval_tokenizer import reconstruct

    streams = STREAMS[split]
    renders = [shapes_sample(streams["renders"], i) for i in range(n_renders)]
    vq = VQVAE.from_pretrained(model, subfolder="vqvae", dtype=torch.float32).eval()
    recons = reconstruct(vq, [s.image for s in renders]).images
    results = {"split": split, "streams": streams, "tokenizer": model}
    for name, strict in (("lenient", False), ("strict", True)):
        results[name] = {
            "renders": right_images(renders, [s.image for s in renders], strict),
            "reconstructions": right_images(renders, recons, strict),
            **{
                f"{64 * scale}px": {
                    k: named_broken(k, streams["drawings"], n_drawings, scale, strict) for k in DEFORMATIONS
                }
                for scale in (1, 2)
            },
        }
    return results


def format_table(results: dict) -> str:
    lines = [f"{'':<34}{'lenient':>9}{'strict':>9}", "-" * 52]
    for what in ("renders", "reconstructions"):
        lines.append(
            f"{what + ' read right':<34}" + "".join(f"{results[j][what]:>9.1%}" for j in ("lenient", "strict"))
        )
    for px in ("64px", "128px"):
        for kind in DEFORMATIONS:
            row = f"{kind} ({px}) named"
            lines.append(f"{row:<34}" + "".join(f"{results[j][px][kind]:>9.1%}" for j in ("lenient", "strict")))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    results = evaluate(args.model, "tuning" if args.tuning else "held-out", args.n_renders, args.n_drawings)
    print(format_table(results))
    write_results(results, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default="assets/mmgen-base", help="model folder whose tokenizer reconstructs")
    p.add_argument("--tuning", action="store_true", help="the tuning streams the strict settings were chosen on")
    p.add_argument("--n-renders", type=int, default=200)
    p.add_argument("--n-drawings", type=int, default=60, help="wrong drawings of each kind")
    p.add_argument("--out", default=None)
    return p
