"""Token grounding: each object word's cross-attention pulled onto its own object (a TokenCompose-style loss).

TokenCompose (Wang et al., CVPR 2024, https://arxiv.org/abs/2312.03626) trains a text-to-image model with a loss
on its cross-attention maps: the attention that image positions pay to an object's noun should fall inside that
object's mask. This targets binding, which two-object prompts need: in "a red circle to the left of a blue
square", run 18 puts both colours in the right places 97 % of the time. But each object gets its own shape only
63 % of the time, the other object's 14 % and a blob 21 %.

shapes-v1 gives the grounding for free. Every caption is written from labels, so we know which word pieces name
each object's colour and shape. We also know which patches of the latent grid the object covers (its bounding
box, from the labelled centre and side). For each such word w and its object's patches R, with A_w the
attention that each image patch pays to w (averaged over heads and blocks):

    L = (1 - sum_{patches in R} A_w / sum_{all patches} A_w) ** 2        (TokenCompose's token loss)

averaged over the words of the captions that were not dropped for classifier-free guidance.

Measured once (run 21b in the model card: run 18 trained 2,000 more steps with and without it, same seeds): the
loss fell from 0.35 to 0.03, but two-object prompts came out no better than without it (41.4 / 45.1 against
46.3 / 46.9 % on 512 tuning prompts at guidance 3 / 4), so `--grounding-loss-weight` is off by default.

Dimension letters: N scenes, B batch, O objects (at most 2), W = 2 O words (colour, shape per object),
L text tokens, T image tokens (patches, row-major as the DiT's), G the patch grid's side (T = G * G).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ..data.shapes import CANVAS, shapes_annotation

MAX_OBJECTS = 2
WORDS_PER_OBJECT = 2  # its colour and its shape
MIN_COVER = 0.1  # a patch belongs to an object's region when its box covers this share of the patch (1 px of 8: 1/8)


def word_token_masks(tokenizer, captions: list[str], scenes: list[list[dict]], max_tokens: int) -> torch.Tensor:
    """(N, W, L) bool: for each scene's objects in caption order, the word pieces of its colour, then its shape.

    Words are found by character offsets, so a word cut into several pieces ("cyan" -> "cy", "##an") marks all
    of them. Each word is searched after the previous one, so "a red circle ... a blue circle" gives each
    object its own "circle"."""
    enc = tokenizer(
        captions, padding="max_length", truncation=True, max_length=max_tokens, return_offsets_mapping=True
    )
    masks = torch.zeros(len(captions), MAX_OBJECTS * WORDS_PER_OBJECT, max_tokens, dtype=torch.bool)
    for n, (caption, objects, offsets) in enumerate(zip(captions, scenes, enc["offset_mapping"])):
        start = 0
        for o, obj in enumerate(objects):
            for k, word in enumerate((obj["color"], obj["shape"])):
                found = re.compile(rf"\b{re.escape(word)}\b").search(caption, start)
                if found is None:
                    raise ValueError(f"caption {caption!r} does not name {word!r} where expected")
                start = found.end()
                pieces = [j for j, (a, b) in enumerate(offsets) if b > a and a >= found.start() and b <= found.end()]
                masks[n, WORDS_PER_OBJECT * o + k, pieces] = True
    return masks


def object_patch_masks(scenes: list[list[dict]], grid: int, canvas: int = CANVAS) -> torch.Tensor:
    """(N, O, T) bool: the patches of a G x G grid over the canvas that each object's bounding box covers by at
    least MIN_COVER of their area (rows absent objects: all False)."""
    N, patch = len(scenes), canvas / grid
    box = np.full((N, MAX_OBJECTS, 4), np.nan)  # x0, y0, x1, y1 in pixels
    for n, objects in enumerate(scenes):
        for o, obj in enumerate(objects):
            (cx, cy), half = obj["center"], obj["side"] / 2
            box[n, o] = (cx - half, cy - half, cx + half, cy + half)
    edges = np.arange(grid) * patch  # (G,) each patch's left (or top) edge

    def overlap(lo, hi):  # (N, O) -> (N, O, G): the share of each patch column (or row) inside [lo, hi]
        return (np.minimum(hi[..., None], edges + patch) - np.maximum(lo[..., None], edges)).clip(0) / patch

    cover = overlap(box[..., 1], box[..., 3])[..., :, None] * overlap(box[..., 0], box[..., 2])[..., None, :]
    cover = np.nan_to_num(cover)  # (N, O, G, G): absent objects cover nothing
    return torch.from_numpy(cover.reshape(N, MAX_OBJECTS, grid * grid) >= MIN_COVER)


@dataclass
class GroundingTargets:
    """Per training scene: which text tokens name each object's words, and which patches each object covers."""

    words: torch.Tensor  # (N, W, L) bool
    regions: torch.Tensor  # (N, O, T) bool

    def __getitem__(self, pick: torch.Tensor) -> GroundingTargets:
        return GroundingTargets(self.words[pick], self.regions[pick])


def shapes_grounding(seed: int, n: int, tokenizer, grid: int, max_tokens: int) -> GroundingTargets:
    """The grounding targets of the first n scenes of shapes-v1 stream `seed`, from their labels and captions
    (no image is drawn: a few seconds for 60,000 scenes)."""
    labels, captions = zip(*(shapes_annotation(seed, i) for i in range(n)))
    scenes = [scene["objects"] for scene in labels]
    return GroundingTargets(
        word_token_masks(tokenizer, list(captions), scenes, max_tokens), object_patch_masks(scenes, grid)
    )


def grounding_loss(maps: torch.Tensor, targets: GroundingTargets, keep: torch.Tensor) -> torch.Tensor:
    """TokenCompose's token loss (see the module docstring) for a batch.

    maps (B, T, L): the attention each image token pays to each text token (softmax over L), from
    `DiT(..., return_cross_attention=True)`. keep (B,) bool: False where the caption was dropped to the empty
    prompt, whose words ground nothing."""
    words = targets.words.to(maps.device, maps.dtype)  # (B, W, L)
    region = targets.regions.repeat_interleave(WORDS_PER_OBJECT, dim=1).to(maps.device, maps.dtype)  # (B, W, T)
    word_maps = torch.einsum("btl,bwl->bwt", maps, words)  # (B, W, T) attention paid to each word, per patch
    inside = (word_maps * region).sum(-1) / word_maps.sum(-1).clamp_min(1e-6)  # (B, W) share inside its object
    valid = (targets.words.any(-1) & keep[:, None]).to(maps.device, maps.dtype)  # (B, W)
    return (((1 - inside) ** 2) * valid).sum() / valid.sum().clamp_min(1)
