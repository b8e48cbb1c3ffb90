"""`mmgen eval-attention`: does each word's attention map land where the word's object is drawn?

    mmgen eval-attention --model assets/mmgen-base-64 --out assets/mmgen-base-64/eval_attention.json

For single-object prompts naming every attribute ("a large red circle in the top left on a white background"),
one image each at the pipeline's defaults, recorded by `mmgen.AttentionRecorder`; the scene judge reads where the
object came out (its fitted box: centre and side). A word's map "peaks on the object" when the map's maximum lies in
that box. Reported for the shape, colour and size words (over all steps, by thirds of the steps, and the shape word
by the object's size), and for the background's colour word (which should peak off the object), beside chance: the
share of the image the box covers. Images where the judge finds no object of the prompt's colour are left out and
counted.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from ..attention import AttentionRecorder, peak
from ..data.shapes import CANVAS
from ..tokens import SHIPPED_DEFAULT
from . import count, write_results
from .judge import read_scene
from .prompts import single_prompts, warn_unless_shapes

ATTENTION_SEED = 2468  # the prompts' random stream: apart from the generator evaluation's (12345) and tuning (777)
WORDS = ("shape", "color", "size")  # the object's words, read from the prompt item


def in_box(xy: tuple[int, int], obj: dict, margin: float = 0.0) -> bool:
    """Whether pixel (x, y) lies in the judge's box of an object (centre and side, pixels; pixel centres), grown by
    `margin` pixels on every side."""
    half = obj["side"] / 2 + margin
    return all(abs(v + 0.5 - c) <= half for v, c in zip(xy, obj["center"]))


def box_mask(obj: dict, side: int) -> np.ndarray:
    """(side, side) bool: the pixels whose centres lie in the judge's box of an object."""
    centres = np.arange(side) + 0.5
    inside = [np.abs(centres - c) <= obj["side"] / 2 for c in obj["center"]]  # x, then y
    return inside[1][:, None] & inside[0][None, :]


def in_image_pixels(obj: dict, image_side: int) -> dict:
    """The judge's object with its box (centre and side, in 64-px units) in the pixels of an image_side image."""
    scale = image_side / CANVAS
    return obj | {"center": [c * scale for c in obj["center"]], "side": obj["side"] * scale}


def _phase_maps(rec: AttentionRecorder) -> dict[str, dict[str, np.ndarray]]:
    """Word maps averaged over the first, middle and last third of the recorded steps."""
    n = len(rec.steps)
    thirds = {
        "first third": range(0, n // 3),
        "middle third": range(n // 3, 2 * n // 3),
        "last third": range(2 * n // 3, n),
    }
    phases = {}
    for name, steps in thirds.items():
        per_step = [rec.word_maps(step=k) for k in steps]
        phases[name] = {w: np.mean([m[w] for m in per_step], axis=0) for w in per_step[0]}
    return phases


def evaluate_attention(pipe, n: int, seed: int = ATTENTION_SEED) -> dict:
    """Peak-on-object rates per word kind over `n` prompts (over all steps, by thirds of the steps, and the shape
    word's by the object's size), the background word's peak-off-object rate, chance and the shape word's mean
    peak distance from the object's centre in pixels."""
    items = single_prompts(n, np.random.default_rng(seed))
    # "near": within half a DiT patch (a patch is 8 px at 64, 16 at 128), the maps' own resolution; a shape word
    # often peaks on the outline
    near_px = pipe.transformer.config.patch_size * pipe.vqvae.downsample_factor / 2
    hits, near, share, by_size = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    phases = defaultdict(lambda: defaultdict(list))
    background, distance, area, missing = [], [], [], 0
    for i, item in enumerate(items):
        with AttentionRecorder(pipe, item["prompt"]) as rec:
            # every block at every step: a skipped step would record the first block's maps alone
            image = pipe(item["prompt"], generator=torch.Generator().manual_seed(i), first_block_cache=0).images[0]
        want = item["objects"][0]
        found = [o for o in read_scene(image)["objects"] if o["color"] == want["color"]]
        if not found:
            missing += 1
            continue
        obj, maps = in_image_pixels(found[0], image.width), rec.word_maps()
        for kind in WORDS:
            hits[kind].append(in_box(peak(maps[want[kind]]), obj))
            near[kind].append(in_box(peak(maps[want[kind]]), obj, near_px))
            share[kind].append(float(maps[want[kind]][box_mask(obj, image.width)].mean()))
        by_size[obj["size"]].append(hits["shape"][-1])
        for phase, phase_maps in _phase_maps(rec).items():
            for kind in ("shape", "color"):
                phases[phase][kind].append(in_box(peak(phase_maps[want[kind]]), obj))
        background.append(not in_box(peak(maps[item["background"]]), obj))  # palettes never share a name
        distance.append(float(np.hypot(*(np.array(peak(maps[want["shape"]])) + 0.5 - obj["center"]))))
        area.append(min(obj["side"], image.width) ** 2 / (image.width * image.height))
    if missing == n:  # every mean below would be NaN, which no JSON reader takes
        raise ValueError(f"the judge found no object in any of the {n} images: there is no attention to score")
    return {
        "peak_on_object": {k: float(np.mean(v)) for k, v in hits.items()},
        "peak_near_object": {k: float(np.mean(v)) for k, v in near.items()},
        "share_on_object": {k: float(np.mean(v)) for k, v in share.items()},
        "peak_on_object_by_steps": {
            p: {k: float(np.mean(v)) for k, v in kinds.items()} for p, kinds in phases.items()
        },
        "shape_peak_on_object_by_size": {k: float(np.mean(v)) for k, v in sorted(by_size.items())},
        "background_peak_off_object": float(np.mean(background)),
        "chance": float(np.mean(area)),
        "shape_peak_distance_px": float(np.mean(distance)),
        "image_side": image.width,
        "near_px": near_px,
        "n": n - missing,
        "no_object_found": missing,
        "seed": seed,
    }


def format_attention(results: dict) -> str:
    lines = [f"word attention on {results['n']} images (judge found no object in {results['no_object_found']})"]
    near = results["peak_near_object"]
    lines += [
        f"  {k + ' word':<16}peaks on the object {v:.1%}, within {results['near_px']:g} px of it {near[k]:.1%}"
        for k, v in results["peak_on_object"].items()
    ]
    lines.append(f"  chance: the share of the image in the object's box, {results['chance']:.1%}")
    shares = ", ".join(f"{k} word {v:.1%}" for k, v in results["share_on_object"].items())
    lines.append(f"  mean share of the attention on the object's pixels: {shares}")
    for phase, kinds in results["peak_on_object_by_steps"].items():
        lines.append(f"  steps' {phase}: " + ", ".join(f"{k} word {v:.1%}" for k, v in kinds.items()))
    by_size = ", ".join(f"{k} {v:.1%}" for k, v in results["shape_peak_on_object_by_size"].items())
    lines.append(f"  shape word by the object's size: {by_size}")
    lines.append(f"  background colour word peaks off the object {results['background_peak_off_object']:.1%}")
    lines.append(
        f"  shape word's peak to object centre: {results['shape_peak_distance_px']:.1f} px on average "
        f"({results['image_side']}-px images)"
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    from ..pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(args.model)
    warn_unless_shapes(pipe, "eval-attention")
    pipe.set_progress_bar_config(disable=True)
    results = evaluate_attention(pipe, args.n)
    print(format_attention(results))
    write_results(results | {"model": str(args.model)}, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default=SHIPPED_DEFAULT, help="model folder, shipped name or Hub id")
    p.add_argument("--n", type=count(1), default=100, help="single-object prompts, one image each")
    p.add_argument("--out", default="eval/attention.json", help="results JSON")
    return p
