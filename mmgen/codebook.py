"""What a codebook holds: each code drawn as pixels, how often codes occur, neighbours and example cells.

Scales to K = 16,384 codes (Kandinsky's MoVQ): building an atlas encodes the reference set only; a code's tile
(the decoded image of a flat grid of that code) is decoded when first asked for, in batches, and kept in a
bounded cache, so an app shows the first page of a large codebook in well under a second at small widths
(`make bench`, section "atlas").

    atlas = CodebookAtlas.build(tok, reference_images(downsample_factor=tok.downsample_factor))  # any Tokenizer
    page = atlas.page(0, per_page=256, by="usage")  # page.codes, page.tiles: this page's codes and their tiles
    atlas.tiles[k]                  # one code's tile (16x16 px: a flat grid of 16/f x 16/f tokens)
    atlas.counts, atlas.stats       # occurrences over the reference set; usage, perplexity, dead codes
    atlas.neighbours(k)             # the nearest codes in the quantiser's own metric
    atlas.examples(k)               # crops of reference images around cells holding code k

The app's Codebook tab draws these with `mmgen.viz` (`tile_grid(page.tiles, range(len(page.codes)))`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data.shapes import SCALES, shapes_sample
from .images import pil_to_tensor, tensor_to_pil, to_rgb
from .tokenizers import Tokenizer, as_tokenizer

REFERENCE_SHAPES_SEED = 2  # held-out shapes-v1 stream, as in the tokenizer's evaluation
TILE_SIDE = 16  # pixels: a tile is a flat grid of max(1, min(4, TILE_SIDE // f)) tokens a side
PREFETCH_CODES = 1024  # codebooks up to this size are decoded whole at build time (one batched pass)


def usage_stats(counts: np.ndarray) -> dict:
    """Share of codes used at least once, perplexity exp(entropy) of the usage, and the count of unused codes."""
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return {
        "usage": float((counts > 0).mean()),
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
        "dead_codes": int((counts == 0).sum()),
    }


def reference_images(
    n_shapes: int = 48, photos: list[Image.Image] | None = None, downsample_factor: int = 4
) -> list[Image.Image]:
    """The reference set: held-out shapes-v1 scenes plus any photos given (e.g. the app's examples). The scenes are
    drawn at the size the tokenizer turns into 16x16 tokens, as its generator draws them (64 px at f4, 128 at f8,
    256 at f16): on 64-px scenes mmgen-base's f8 leaves a third of the codes it uses on 128-px ones unused."""
    scale = min(SCALES, key=lambda m: abs(16 * downsample_factor - 64 * m))
    return [shapes_sample(REFERENCE_SHAPES_SEED, i, scale=scale).image for i in range(n_shapes)] + list(photos or [])


def default_tile_tokens(downsample_factor: int) -> int:
    """Tokens per tile side: 16 px tiles (4 tokens at f4, 2 at f8, 1 at f16), and at most 4 tokens. The decoder's
    time grows with pixels: a page of 256 tiles of a K = 16,384 MoVQ-like decoder took 2.0-2.4x as long at 32 px."""
    return max(1, min(4, TILE_SIDE // downsample_factor))


def outside(side: int, square: int = 2) -> Image.Image:
    """A side x side checkerboard of light grays in `square`-px squares: where a crop runs past its image."""
    yy, xx = np.mgrid[:side, :side] // square
    return Image.fromarray(np.where(((yy + xx) % 2)[..., None] == 1, 200, 235).astype(np.uint8).repeat(3, axis=2))


class TileCache(Sequence):
    """Code tiles decoded on demand: `tiles[k]` or `tiles.get(codes)`; missing codes are decoded `batch` at a
    time and the `max_tiles` most recently used are kept. Safe to share between threads."""

    def __init__(self, tokenizer: Tokenizer, tile_tokens: int, batch: int = 64, max_tiles: int = 8192):
        self.tokenizer, self.tile_tokens, self.batch, self.max_tiles = tokenizer, tile_tokens, batch, max_tiles
        self._tiles: OrderedDict[int, Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # tiles decoded so far (a cache miss each)

    def __len__(self) -> int:
        return self.tokenizer.num_codes

    def __getitem__(self, code: int) -> Image.Image:
        if not isinstance(code, int | np.integer):
            raise TypeError("index the tiles with one code id, or use get(codes)")
        return self.get([int(code)])[0]

    def get(self, codes: Iterable[int]) -> list[Image.Image]:
        codes = [int(c) for c in codes]
        bad = [c for c in codes if not 0 <= c < len(self)]
        if bad:
            raise ValueError(f"code id must be in 0..{len(self) - 1}, got {bad[0]}")
        with self._lock:
            missing = list(dict.fromkeys(c for c in codes if c not in self._tiles))
            for start in range(0, len(missing), self.batch):
                self._decode(missing[start : start + self.batch])
            tiles = []
            for c in codes:
                self._tiles.move_to_end(c)
                tiles.append(self._tiles[c])
            while len(self._tiles) > max(self.max_tiles, len(codes)):
                self._tiles.popitem(last=False)
            return tiles

    def clear(self) -> None:
        """Forget every decoded tile (they are decoded again when asked for)."""
        with self._lock:
            self._tiles.clear()

    def _decode(self, codes: list[int]) -> None:
        n = self.tile_tokens
        ids = torch.tensor(codes)[:, None, None].expand(len(codes), n, n)  # (B, n, n)
        for code, image in zip(codes, self.tokenizer.decode_indices(ids)):
            self._tiles[code] = tensor_to_pil(image)
        self.decoded += len(codes)


@dataclass
class AtlasPage:
    number: int  # 0-based
    num_pages: int
    codes: list[int]  # the code ids on this page, in display order
    tiles: list[Image.Image]  # their tiles, same order


@dataclass
class CodebookAtlas:
    tiles: TileCache  # per code: the decoded image of a flat grid of that code, decoded on first use
    counts: np.ndarray  # (K,) occurrences over the reference set
    occurrences: list[list[tuple[int, int, int]]]  # per code: (image index, row, col), a few at most
    images: list[Image.Image]  # the reference images as encoded
    codes: torch.Tensor  # (K, D) code vectors
    factor: int  # pixels per token side
    metric: str = "euclidean"  # how the quantiser picks codes: "cosine" (mmgen) or "euclidean" (VQModel)
    _orders: dict = field(default_factory=dict, repr=False)

    @classmethod
    @torch.inference_mode()
    def build(
        cls,
        tokenizer,
        images: list[Image.Image],
        tile_tokens: int | None = None,
        keep: int = 8,
        prefetch: int = PREFETCH_CODES,
    ) -> CodebookAtlas:
        """Encode the reference images once; a codebook of at most `prefetch` codes is decoded now, larger ones
        page by page as they are shown."""
        tok = as_tokenizer(tokenizer)
        f, k = tok.downsample_factor, tok.num_codes
        counts = np.zeros(k, dtype=np.int64)
        occurrences: list[list[tuple[int, int, int]]] = [[] for _ in range(k)]
        encoded = []
        for i, image in enumerate(images):
            image = to_rgb(image)  # EXIF rotation first: it may swap the sides
            w, h = (image.width // f) * f, (image.height // f) * f
            if not w or not h:
                raise ValueError(f"reference image {i} is {image.width}x{image.height}, smaller than a token ({f} px)")
            image = image.crop((0, 0, w, h))
            encoded.append(image)
            grid = tok.encode(pil_to_tensor(image)[None]).indices[0].cpu().numpy()  # (h, w)
            counts += np.bincount(grid.ravel(), minlength=k)
            found, first = np.unique(grid.ravel(), return_index=True)  # one cell per image: varied examples
            for code, pos in zip(found.tolist(), first.tolist()):
                if len(occurrences[code]) < keep:
                    occurrences[code].append((i, *divmod(pos, grid.shape[1])))
        tiles = TileCache(tok, tile_tokens or default_tile_tokens(f))
        if k <= prefetch:
            tiles.get(range(k))
        return cls(tiles, counts, occurrences, encoded, tok.codebook.detach().float().cpu(), f, tok.metric)

    @property
    def num_codes(self) -> int:
        return len(self.counts)

    @property
    def stats(self) -> dict:
        return usage_stats(self.counts)

    def dead_codes(self) -> np.ndarray:
        """Ids of the codes the reference set never uses."""
        return np.flatnonzero(self.counts == 0)

    def order(self, by: str = "usage") -> list[int]:
        """Code ids sorted by usage (most used first) or by id."""
        if by not in ("usage", "id"):
            raise ValueError(f"sort by 'usage' or 'id', not {by!r}")
        if by not in self._orders:
            ids = np.argsort(-self.counts, kind="stable") if by == "usage" else np.arange(self.num_codes)
            self._orders[by] = ids.tolist()
        return list(self._orders[by])

    def num_pages(self, per_page: int = 256) -> int:
        return -(-self.num_codes // per_page)

    def page(self, number: int, per_page: int = 256, by: str = "usage") -> AtlasPage:
        """One page of the atlas in `by` order; only its tiles are decoded (and then cached)."""
        pages = self.num_pages(per_page)
        if not 0 <= number < pages:
            raise ValueError(f"page must be in 0..{pages - 1}, got {number}")
        codes = self.order(by)[number * per_page : (number + 1) * per_page]
        return AtlasPage(number, pages, codes, self.tiles.get(codes))

    def page_of(self, code: int, per_page: int = 256, by: str = "usage") -> int:
        """The page (in `by` order) that shows `code`."""
        self._check(code)
        position = self.order(by).index(code) if by == "usage" else code
        return position // per_page

    def neighbours(self, code: int, k: int = 8, metric: str | None = None) -> list[tuple[int, float]]:
        """The k codes nearest to `code`, nearest first, with their cosine similarity (metric "cosine") or
        Euclidean distance ("euclidean"); by default the quantiser's own metric (`self.metric`)."""
        self._check(code)
        metric = metric or self.metric
        if metric == "cosine":
            v = torch.nn.functional.normalize(self.codes, dim=1)
            scores, largest = v @ v[code], True
        elif metric == "euclidean":
            scores, largest = torch.cdist(self.codes[code][None], self.codes)[0], False
        else:
            raise ValueError(f"metric must be 'cosine' or 'euclidean', not {metric!r}")
        scores[code] = -float("inf") if largest else float("inf")
        top = torch.topk(scores, min(k, len(scores) - 1), largest=largest)
        return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]

    def examples(self, code: int, context: int = 2) -> list[Image.Image]:
        """Crops of reference images centred on cells holding `code`, with `context` cells around each, the
        centre cell framed in magenta; beyond the image's border, a gray checkerboard (no flat colour: shapes-v1's
        backgrounds are white, gray and black, and a flat margin read as part of the scene)."""
        self._check(code)
        f, crops = self.factor, []
        side = (2 * context + 1) * f
        for i, r, c in self.occurrences[code]:
            image = self.images[i].convert("RGB")
            x0, y0 = (c - context) * f, (r - context) * f
            crop = outside(side)
            inside = (max(x0, 0), max(y0, 0), min(x0 + side, image.width), min(y0 + side, image.height))
            crop.paste(image.crop(inside), (inside[0] - x0, inside[1] - y0))
            cell = (context * f - 1, context * f - 1, (context + 1) * f, (context + 1) * f)
            ImageDraw.Draw(crop).rectangle(cell, outline=(255, 0, 200), width=1)
            crops.append(crop)
        return crops

    def _check(self, code: int) -> None:
        if not 0 <= code < len(self.counts):
            raise ValueError(f"code id must be in 0..{len(self.counts) - 1}, got {code}")
