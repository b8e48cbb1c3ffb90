"""A judge for shapes-v1 images: reads back every object's colour, shape, size and cell, and the background.

Written from the spec alone (`docs/shapes-v1.md`), so it can score any image, generated or
reconstructed. The background is the palette colour nearest the border. For each blob of an object colour (one
object per blob: shapes-v1 never repeats a colour in a scene, so a second blob of one colour is an object drawn
twice, which a generator can do), it estimates every pixel's coverage (how far the pixel lies from the
background towards that colour, so anti-aliased edges count in part), then fits spec renderings of the six
shapes over a small range of sides and centres around the blob's box; the best soft overlap names the shape,
its side gives the size and its centre the cell. On rendered ground truth it scores 100 % (tests/test_judge.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from ..data.shapes import BACKGROUNDS, CANVAS, CELL_COORDS, COLORS, POSITIONS, SHAPES, SIZES, shape_coverage

# A pixel seeds an object only when this close to a palette colour (RGB distance). Palette colours are at
# least 75 apart, so anti-aliased edge pixels, halfway between two colours, seed nothing.
COLOR_TOLERANCE = 36.0
MIN_AREA = 12  # seed pixels: a small star has ~40, stray or edge pixels far fewer
SIZE_THRESHOLD = (SIZES["small"] + SIZES["large"]) / 2
POSITION_NAMES = {xy: name for name, xy in POSITIONS.items()}
SIDE_SEARCH = (-1, 0, 1, 2, 3)  # pixels around the measured box side (thin star tips shrink the box)
SHIFT_SEARCH = (-1.0, 0.0, 1.0)  # pixels around the box centre (a star's box sits above its centre)
# The strict reading (`read_scene(..., strict=True)`) answers "none" for an object a person would not call the
# fitted shape, by the shape verifier (`mmgen.eval.verifier`, docs/judge.md): thresholds on the fit (its IoU, the
# size of the part that misfits) refused lumpy small shapes a person still names, and let wrong ones through.
MISFIT_COVERAGE = 0.5  # `misfit_pixels`: a pixel misfits when object and fit differ by more than half its coverage
NO_SHAPE = "none"


def _nearest(value: np.ndarray, palette: dict) -> str:
    names = list(palette)
    d = np.linalg.norm(np.array([palette[n] for n in names], dtype=np.float32) - value, axis=1)
    return names[int(d.argmin())]


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-6))


class ShapeFit(NamedTuple):
    shape: str
    side: float  # pixels
    center: tuple[float, float]  # (x, y) pixels
    iou: float  # soft IoU of the spec rendering with the object's coverage, 0..1


def fit_shape(alpha: np.ndarray) -> ShapeFit:
    """The spec rendering that best overlaps one object's (H, W) coverage map."""
    ys, xs = np.nonzero(alpha >= 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side0, cx0, cy0 = float(max(x1 - x0, y1 - y0)), (x0 + x1) / 2, (y0 + y1) / 2
    best = ShapeFit("", side0, (cx0, cy0), -1.0)
    for shape in SHAPES:
        for ds in SIDE_SEARCH:
            for dx in SHIFT_SEARCH:
                for dy in SHIFT_SEARCH:
                    center = (cx0 + dx, cy0 + dy)
                    iou = _soft_iou(shape_coverage(shape, *center, side0 + ds, canvas=alpha.shape[0]), alpha)
                    if iou > best.iou:
                        best = ShapeFit(shape, side0 + ds, center, iou)
    return best


def misfit_pixels(alpha: np.ndarray, fit: ShapeFit) -> int:
    """The largest connected part where an object's coverage and its fitted spec rendering differ by more than
    MISFIT_COVERAGE, after an opening by a 2x2 square (differences a pixel wide do not count), in pixels."""
    rendered = shape_coverage(fit.shape, *fit.center, fit.side, canvas=alpha.shape[0])
    misfit = ndimage.binary_opening(np.abs(alpha - rendered) > MISFIT_COVERAGE, structure=np.ones((2, 2), bool))
    parts, n = ndimage.label(misfit)
    return int(np.bincount(parts.ravel())[1:].max()) if n else 0


def at_judge_size(image: Image.Image) -> Image.Image:
    """A square scene at the 64 px the judge reads: one drawn at 128 or 256 px (every length x2, x4: the spec's
    Resolution) box-averaged, a smaller one (a tiny test model's) enlarged; a 64-px image as it is."""
    if image.size == (CANVAS, CANVAS):
        return image
    if image.width != image.height:
        raise ValueError(f"a shapes-v1 scene is square, got {image.width}x{image.height}")
    resample = Image.Resampling.BOX if image.width > CANVAS else Image.Resampling.BILINEAR
    return image.resize((CANVAS, CANVAS), resample)


def object_coverages(image: Image.Image) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """A square scene's background name and its objects as (colour name, (64, 64) float32 coverage map), one per
    partly covered region around a large enough seed of that colour (`read_scene` reads each)."""
    arr = np.asarray(at_judge_size(image).convert("RGB"), dtype=np.float32)  # (64, 64, 3)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    background = _nearest(np.median(border, axis=0), BACKGROUNDS)
    bg = np.array(BACKGROUNDS[background], dtype=np.float32)

    names = list(COLORS)
    palette = np.array([COLORS[n] for n in names], dtype=np.float32)  # (8, 3)
    dist = np.linalg.norm(arr[:, :, None, :] - palette[None, None], axis=-1)  # (H, W, 8)
    label, close = dist.argmin(-1), dist.min(-1) < COLOR_TOLERANCE

    objects = []
    for k, color in enumerate(names):
        seeds, n = ndimage.label((label == k) & close)
        if n == 0:
            continue
        areas = ndimage.sum_labels(np.ones_like(seeds), seeds, index=range(1, n + 1))
        if areas.max() < MIN_AREA:
            continue
        # coverage: projection of (pixel - background) onto (colour - background), in [0, 1], counted only
        # where the pixel lies near that line: another object's colour may project far along it (orange
        # reads as 90 % green) and would merge two neighbouring objects into one blob.
        direction = palette[k] - bg
        alpha = ((arr - bg) @ direction / (direction @ direction)).clip(0, 1)  # (H, W)
        off_line = np.linalg.norm(arr - (bg + alpha[..., None] * direction), axis=-1)  # (H, W)
        alpha = np.where(off_line < COLOR_TOLERANCE, alpha, 0.0)
        region, _ = ndimage.label(alpha > 0.1)
        # One object per partly covered region around a large enough seed: shapes-v1 never repeats a colour in
        # a scene, so a second such region is a second object of that colour (a duplicate), not a fragment.
        big_seeds = 1 + np.flatnonzero(areas >= MIN_AREA)
        for r in np.setdiff1d(region[np.isin(seeds, big_seeds)], [0]):
            objects.append((color, np.where(region == r, alpha, 0.0).astype(np.float32)))
    return background, objects


def coverage_of(image: Image.Image, color: str, rank: int = 0) -> np.ndarray | None:
    """The (64, 64) coverage map of the scene's `rank`-th largest object of `color` (0: the largest; two of one
    colour are a duplicate), or None when it has fewer: how a labelled object is found again."""
    same = sorted((a for c, a in object_coverages(image)[1] if c == color), key=lambda a: -a.sum())
    return same[rank] if len(same) > rank else None


def read_scene(image: Image.Image, strict: bool = False) -> dict:
    """Read a square scene at 64 px (others are resized to 64 first, `at_judge_size`):
    {"background": name, "objects": [{"color", "shape", "size", "position", "center", "side", "score", "area",
    "misfit", "verified"}]}, objects in decreasing area. `center` is (x, y) and `side` the shape's side, in 64-px
    units; `score` the soft IoU of the best-fitting shape; `area` the object's coverage summed, in pixels;
    `misfit` the largest part (pixels) where object and fit differ (`misfit_pixels`); `verified` the shape
    verifier's probability that a person calls the object the fitted shape (`mmgen.eval.verifier`; strict
    readings only, else None). `strict`: the shape is "none" when that probability is under the verifier's
    calibrated threshold, as a person would not name a star missing a point or a square with a notch."""
    from .verifier import load_verifier  # torch and diffusers: only a strict reading needs them

    background, coverages = object_coverages(image)
    verifier = load_verifier() if strict else None
    objects = []
    for color, alpha in coverages:
        fit = fit_shape(alpha)
        cell = tuple(min(CELL_COORDS, key=lambda c: abs(c - v)) for v in fit.center)
        verified = None if verifier is None else verifier.shape_prob(alpha, fit.shape)
        objects.append(
            {
                "color": color,
                "shape": fit.shape if verified is None or verified >= verifier.config.threshold else NO_SHAPE,
                "size": "small" if fit.side < SIZE_THRESHOLD else "large",
                "position": POSITION_NAMES[cell],
                "center": [float(fit.center[0]), float(fit.center[1])],
                "side": float(fit.side),
                "score": round(fit.iou, 3),
                "area": float(alpha.sum()),
                "misfit": misfit_pixels(alpha, fit),
                "verified": None if verified is None else round(verified, 3),
            }
        )
    objects.sort(key=lambda o: -o["area"])
    return {"background": background, "objects": objects}


ATTRIBUTES = ("color", "shape", "size", "position")


def score_scene(read: dict, truth: dict) -> dict:
    """Compare a read scene with ground-truth labels: per-attribute correctness of each true object (matched by
    colour, else by nearest centre), the background, the object count, and `all` (everything right at once)."""
    result = {
        "background": read["background"] == truth["background"],
        "count": len(read["objects"]) == len(truth["objects"]),
        "objects": [],
    }
    for obj in truth["objects"]:
        candidates = [o for o in read["objects"] if o["color"] == obj["color"]] or read["objects"]
        if not candidates:
            result["objects"].append(dict.fromkeys(ATTRIBUTES, False))
            continue
        best = min(
            candidates, key=lambda o: np.hypot(o["center"][0] - obj["center"][0], o["center"][1] - obj["center"][1])
        )
        result["objects"].append({a: best[a] == obj[a] for a in ATTRIBUTES})
    result["all"] = result["background"] and result["count"] and all(all(o.values()) for o in result["objects"])
    return result
