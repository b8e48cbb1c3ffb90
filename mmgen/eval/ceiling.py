"""The tokenizer ceiling: the most the generator evaluation could score, given what the tokenizer loses.

A generator's image is always a decoded token grid, so even a generator that predicted the exact tokens of a
correct scene scores no better than that scene after the tokenizer's round trip (encode -> nearest codes ->
decode). This scores correct shapes-v1 scenes with the evaluation's own rules, as drawn and after the round trip.
"""

from __future__ import annotations

import torch

from ..data.shapes import CANVAS, SCALES, relation, render_scene, shapes_annotation
from ..images import pil_to_tensor
from .judge import read_scene
from .prompts import PromptItem
from .report import format_by_shape
from .scoring import mean_scores, score_single, score_two, shape_by_shape

CEILING_SEED = 4242  # the shapes-v1 stream of the tokenizer ceiling's scenes: no training run reads it


def ceiling_scenes(n_single: int, n_two: int, seed: int = CEILING_SEED) -> dict[str, list[tuple[dict, PromptItem]]]:
    """shapes-v1 scenes of one and of two objects: (labels, the prompt item built from them) per scene."""
    scenes, i = {"single": [], "two": []}, 0
    while len(scenes["single"]) < n_single or len(scenes["two"]) < n_two:
        labels, _ = shapes_annotation(seed, i)
        i += 1
        objects = labels["objects"]
        item = {
            "background": labels["background"],
            "objects": [{k: o[k] for k in ("color", "shape", "size", "position")} for o in objects],
        }
        name = "single" if len(objects) == 1 else "two"
        if name == "two":
            item["relation"] = relation(*objects)[0]
        if len(scenes[name]) < (n_single if name == "single" else n_two):
            scenes[name].append((labels, item))
    return scenes


def scene_scale(pipe) -> int | None:
    """How many times shapes-v1's 64 px the model's images are (1, 2 or 4: the spec's resolutions), to draw its
    scenes at the size the model paints; None for another size."""
    side = pipe.image_size
    return side // CANVAS if side % CANVAS == 0 and side // CANVAS in SCALES else None


@torch.no_grad()
def tokenizer_ceiling(
    pipe, n_single: int = 144, n_two: int = 256, seed: int = CEILING_SEED, batch_size: int = 128
) -> dict:
    """The judge's scores on correct scenes, as drawn ("rendered": the judge's own check, ~100 %) and after the
    tokenizer's round trip, read leniently ("tokenized") and strictly ("tokenized_strict": the ceiling of the strict
    figures): {"single": {"rendered": scores, "tokenized": scores, "tokenized_strict": scores}, "two": {...,
    "by_shape": {"rendered": ..., "tokenized": ..., "tokenized_strict": ...}}}. What the tokenizer loses (small
    stars, drawn as blobs) no generator gets back. The scenes are shapes-v1's (sizes and places as in training),
    drawn at the model's image size (64 or 128 px; else {})."""
    scale = scene_scale(pipe)
    if scale is None:
        return {}
    results = {}
    scorers = {"single": score_single, "two": score_two}
    for name, scenes in ceiling_scenes(n_single, n_two, seed).items():
        if not scenes:
            continue
        rendered = [render_scene(labels, scale) for labels, _ in scenes]
        x = torch.stack([pil_to_tensor(im) for im in rendered]).to(pipe.vqvae.device, pipe.vqvae.dtype)  # (N, 3, H, W)
        ids = torch.cat([pipe.vqvae.encode(x[i : i + batch_size]).indices for i in range(0, len(x), batch_size)])
        results[name] = {}
        decoded = pipe.decode_tokens(ids)
        for kind, images, strict in (
            ("rendered", rendered, False),
            ("tokenized", decoded, False),
            ("tokenized_strict", decoded, True),
        ):
            pairs = [(read_scene(im, strict=strict), item) for im, (_, item) in zip(images, scenes)]
            results[name][kind] = mean_scores(pairs, scorers[name])
            if name == "two":  # beside the generated images' own (shape_errors' two_shape_by_shape)
                results[name].setdefault("by_shape", {})[kind] = shape_by_shape(pairs)
    return results


def format_ceiling(ceiling: dict) -> str:
    """`tokenizer_ceiling` as a plain-text table: each measure as drawn and after the round trip."""
    lines = [
        "tokenizer ceiling: the judge on correct shapes-v1 scenes, as drawn and after the tokenizer's round trip",
        f"{'set':<13}{'metric':<12}{'drawn':>8}{'tokens':>8}{'strict':>8}",
        "-" * 49,
    ]
    for name, kinds in ceiling.items():
        drawn, tokens, strict = kinds["rendered"], kinds["tokenized"], kinds["tokenized_strict"]
        lines += [f"{name:<13}{m:<12}{drawn[m]:>8.3f}{tokens[m]:>8.3f}{strict[m]:>8.3f}" for m in drawn if m != "n"]
        if "by_shape" in kinds:
            by_shape = kinds["by_shape"]
            lines.append(f"{name}, own shape after the round trip: {format_by_shape(by_shape['tokenized'])}")
            lines.append(f"{name}, the same, strict: {format_by_shape(by_shape['tokenized_strict'])}")
    return "\n".join(lines)
