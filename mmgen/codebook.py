"""What the codebook holds: each code drawn as pixels, how often codes occur, neighbours and example cells.

    atlas = CodebookAtlas.build(vq, reference_images())   # encodes the reference set once
    atlas.tiles[k]                  # code k decoded as a flat 4x4-token patch (a 16x16 px tile for f=4)
    atlas.counts, atlas.stats       # occurrences over the reference set; usage, perplexity, dead codes
    atlas.neighbours(k)             # the nearest codes by cosine similarity of the code vectors
    atlas.examples(k)               # crops of reference images around cells holding code k

The app's Codebook tab draws these with `mmgen.viz`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .data.images import pil_to_tensor, tensor_to_pil
from .data.shapes import shapes_sample
from .models.vqvae import VQVAE

REFERENCE_SHAPES_SEED = 2  # held-out shapes-v1 stream, as in the tokenizer's evaluation


def usage_stats(counts: np.ndarray) -> dict:
    """Share of codes used at least once, perplexity exp(entropy) of the usage, and the count of unused codes."""
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return {
        "usage": float((counts > 0).mean()),
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
        "dead_codes": int((counts == 0).sum()),
    }


def reference_images(n_shapes: int = 48, photos: list[Image.Image] | None = None) -> list[Image.Image]:
    """The reference set: held-out shapes-v1 scenes plus any photos given (e.g. the app's examples)."""
    return [shapes_sample(REFERENCE_SHAPES_SEED, i).image for i in range(n_shapes)] + list(photos or [])


@dataclass
class CodebookAtlas:
    tiles: list[Image.Image]  # per code: the decoded image of a grid filled with that code
    counts: np.ndarray  # (K,) occurrences over the reference set
    occurrences: list[list[tuple[int, int, int]]]  # per code: (image index, row, col), a few at most
    images: list[Image.Image]  # the reference images as encoded
    codes: torch.Tensor  # (K, D) code vectors
    factor: int  # pixels per token side

    @classmethod
    @torch.inference_mode()
    def build(cls, vq: VQVAE, images: list[Image.Image], tile_tokens: int = 4, keep: int = 8) -> CodebookAtlas:
        f, k = vq.downsample_factor, vq.config.num_codes
        ids = torch.arange(k)[:, None, None].expand(k, tile_tokens, tile_tokens)
        tiles = [tensor_to_pil(t) for t in vq.decode_indices(ids)]
        counts = np.zeros(k, dtype=np.int64)
        occurrences: list[list[tuple[int, int, int]]] = [[] for _ in range(k)]
        encoded = []
        for i, image in enumerate(images):
            w, h = (image.width // f) * f, (image.height // f) * f
            image = image.convert("RGB").crop((0, 0, w, h))
            encoded.append(image)
            grid = vq.encode(pil_to_tensor(image)[None]).indices[0]
            counts += np.bincount(grid.flatten().numpy(), minlength=k)
            for (r, c), code in zip(np.ndindex(*grid.shape), grid.flatten().tolist()):
                if len(occurrences[code]) < keep and not any(j == i for j, _, _ in occurrences[code]):
                    occurrences[code].append((i, r, c))  # at most one cell per image: varied examples
        codes = vq.quantizer.codebook.detach().float()
        return cls(tiles, counts, occurrences, encoded, codes, f)

    @property
    def stats(self) -> dict:
        return usage_stats(self.counts)

    def order(self, by: str = "usage") -> list[int]:
        """Code ids sorted by usage (most used first) or by id."""
        if by == "usage":
            return np.argsort(-self.counts, kind="stable").tolist()
        if by == "id":
            return list(range(len(self.counts)))
        raise ValueError(f"sort by 'usage' or 'id', not {by!r}")

    def neighbours(self, code: int, k: int = 8) -> list[tuple[int, float]]:
        """The k codes nearest to `code` by cosine similarity, with their similarity."""
        self._check(code)
        v = torch.nn.functional.normalize(self.codes, dim=1)
        sims = v @ v[code]
        sims[code] = -2.0
        top = torch.topk(sims, min(k, len(sims) - 1))
        return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]

    def examples(self, code: int, context: int = 2) -> list[Image.Image]:
        """Crops of reference images centred on cells holding `code`, with `context` cells around each."""
        self._check(code)
        f, crops = self.factor, []
        for i, r, c in self.occurrences[code]:
            box = ((c - context) * f, (r - context) * f, (c + context + 1) * f, (r + context + 1) * f)
            crops.append(self.images[i].crop(box))  # beyond the border: black
        return crops

    def _check(self, code: int) -> None:
        if not 0 <= code < len(self.counts):
            raise ValueError(f"code id must be in 0..{len(self.counts) - 1}, got {code}")
