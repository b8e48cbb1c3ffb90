"""How close a reconstruction is to its original: PSNR, SSIM, and two sharpness figures, *detail kept* and *edges in
place*. Each takes two RGB images of one size, as PIL images or (H, W, 3) uint8 arrays. (Training logs a PSNR of
its own, on batches of tensors: `mmgen.training.train_tokenizer.psnr`.)"""

from __future__ import annotations

import numpy as np
from PIL import Image

Picture = Image.Image | np.ndarray  # RGB: a PIL image, or (H, W, 3) uint8


def psnr(a: Picture, b: Picture) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(255² / MSE) over every channel value (no error: 138 dB)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255.0**2 / max(np.mean((x - y) ** 2), 1e-10)))


def ssim(a: Picture, b: Picture) -> float:
    """Structural similarity (-1..1, 1: the same), over the colour channels; NaN under SSIM's 7x7 window."""
    from skimage.metrics import structural_similarity

    x, y = np.asarray(a), np.asarray(b)
    if min(x.shape[:2]) < 7:
        return float("nan")
    return float(structural_similarity(x, y, channel_axis=2, data_range=255))


def _gradients(im: Picture) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical differences of neighbouring grayscale pixels, (H, W-1) and (H-1, W)."""
    im = Image.fromarray(im) if isinstance(im, np.ndarray) else im
    g = np.asarray(im.convert("L"), dtype=np.float64)
    return np.diff(g, axis=1), np.diff(g, axis=0)


def detail_kept(original: Picture, reconstruction: Picture) -> float:
    """Edge energy of the reconstruction over the original's: mean |horizontal| + mean |vertical| difference of
    neighbouring grayscale pixels. 1: as sharp; below 1: blurred; above 1: invented detail. NaN for a flat original.
    Blind to where the edges are: noise or a hatched texture count as detail (`edges_in_place` does not)."""

    def energy(im: Picture) -> float:
        g = _gradients(im)
        return float(sum(np.abs(d).mean() for d in g)) if all(d.size for d in g) else 0.0

    base = energy(original)
    return energy(reconstruction) / base if base > 0 else float("nan")


def edges_in_place(original: Picture, reconstruction: Picture) -> float:
    """How much of the original's edges the reconstruction draws where they are: the least-squares slope of the
    reconstruction's grayscale neighbour differences on the original's, sum(g_rec * g_orig) / sum(g_orig ** 2).
    1: every edge as in the original; a blur keeps a fraction; texture the original does not have (noise, a
    decoder's invented pattern) adds nothing, where `detail_kept` counts it. NaN for a flat original."""
    pairs = [(o, r) for o, r in zip(_gradients(original), _gradients(reconstruction)) if o.size]
    base = sum(float((o * o).sum()) for o, _ in pairs)
    return sum(float((o * r).sum()) for o, r in pairs) / base if base > 0 else float("nan")
