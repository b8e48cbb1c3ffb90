"""Prompt fidelity on a real domain, by retrieval: is a generated image nearer to its caption's own image than to
every other image of the domain, in a simple fixed feature space?

No judge trained on the domain and no pretrained network: two hand-made feature spaces of different kinds, so
that one can check the other.

- `pixel_features` (the measure): the image box-downsampled to 16x16, RGB in [0, 1] (768 numbers). Colour and
  layout, the way a person recognises an emoji at a glance.
- `gradient_features` (the independent check): a colour histogram (4x4x4 bins) of the pixels that are not the
  background, beside histograms of gradient orientation (8 bins, magnitude-weighted) over a 4x4 grid of a
  32x32 grey version (HOG-like): colours without their places, and edges without their colours.

A gallery image matches its mirror image as well as itself (`ranks`): the trainers flip images half the time, so a
mirrored drawing is still that drawing.

    gallery = Gallery.of(images)                                  # every image of the domain
    ranks = gallery.ranks(generated, targets)                     # (N,) 0 = the target is the nearest
    top_k(ranks, 5)                                               # share with the target among the 5 nearest
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

GRID = 16  # pixel features: 16x16 RGB
HOG_SIDE, HOG_CELLS, HOG_BINS = 32, 4, 8
COLOUR_BINS = 4  # per channel
BACKGROUND_TOLERANCE = 24  # pixels within this of the corner colour (each channel, of 255) are background


def pixel_features(images: list[Image.Image]) -> np.ndarray:
    """(N, 16*16*3) float32: each image box-downsampled to 16x16, RGB in [0, 1]."""
    return np.stack(
        [
            np.asarray(im.convert("RGB").resize((GRID, GRID), Image.Resampling.BOX), np.float32).ravel() / 255
            for im in images
        ]
    )


def _colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """(64,) share of the non-background pixels (background: the top-left corner's colour) in each RGB bin."""
    background = rgb[0, 0].astype(np.int16)
    foreground = np.abs(rgb.astype(np.int16) - background).max(axis=-1) > BACKGROUND_TOLERANCE
    pixels = rgb[foreground] if foreground.any() else rgb.reshape(-1, 3)
    bins = (pixels // (256 // COLOUR_BINS)).astype(np.int64)  # (P, 3) in [0, 4)
    index = (bins[:, 0] * COLOUR_BINS + bins[:, 1]) * COLOUR_BINS + bins[:, 2]
    hist = np.bincount(index, minlength=COLOUR_BINS**3).astype(np.float32)
    return hist / hist.sum()


def _orientation_histograms(rgb: np.ndarray) -> np.ndarray:
    """(4*4*8,) per cell of a 4x4 grid over a 32x32 grey image, magnitude-weighted gradient orientations
    (unsigned, 8 bins), the whole vector of unit length."""
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize((HOG_SIDE, HOG_SIDE), Image.Resampling.BOX), np.float32)
    gy, gx = np.gradient(grey / 255)
    magnitude, angle = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)  # (32, 32) each
    bins = np.minimum((angle / np.pi * HOG_BINS).astype(np.int64), HOG_BINS - 1)
    cell = HOG_SIDE // HOG_CELLS
    cells = np.arange(HOG_SIDE) // cell  # each row's (and column's) cell
    index = (cells[:, None] * HOG_CELLS + cells[None, :]) * HOG_BINS + bins  # (32, 32) flat bin per pixel
    hist = np.bincount(index.ravel(), weights=magnitude.ravel(), minlength=HOG_CELLS**2 * HOG_BINS)
    return (hist / max(np.linalg.norm(hist), 1e-8)).astype(np.float32)


def gradient_features(images: list[Image.Image]) -> np.ndarray:
    """(N, 64 + 128) float32: colour histogram of the foreground beside HOG-like orientation histograms, each
    part scaled to unit length so that both count alike."""
    feats = []
    for im in images:
        rgb = np.asarray(im.convert("RGB"))
        colour = _colour_histogram(rgb)
        feats.append(np.concatenate([colour / max(np.linalg.norm(colour), 1e-8), _orientation_histograms(rgb)]))
    return np.stack(feats)


FEATURES = {"pixels": pixel_features, "gradients": gradient_features}


@dataclass
class Gallery:
    """Every image of the domain in one feature space, with their mirror images."""

    features: np.ndarray  # (G, D)
    mirrored: np.ndarray  # (G, D) the same of each image flipped left to right
    space: str  # a FEATURES key

    @classmethod
    def of(cls, images: list[Image.Image], space: str = "pixels") -> Gallery:
        featurize = FEATURES[space]
        return cls(featurize(images), featurize([ImageOps.mirror(im) for im in images]), space)

    def distances(self, images: list[Image.Image]) -> np.ndarray:
        """(N, G): each image's distance to each gallery image (the nearer of it and its mirror)."""
        q = FEATURES[self.space](images)
        return np.minimum(pairwise_distances(q, self.features), pairwise_distances(q, self.mirrored))

    def ranks(self, images: list[Image.Image], targets: list[int] | np.ndarray) -> np.ndarray:
        """(N,) how many other gallery images are as near to image i as its target gallery image `targets[i]`,
        or nearer (a tie counts against: a blank image is not "found" because it is as far from everything)."""
        d = self.distances(images)
        rows, targets = np.arange(len(images)), np.asarray(targets)
        own = d[rows, targets]
        return (d <= own[:, None]).sum(axis=1) - 1  # less the target itself

    def nearest(self, images: list[Image.Image], k: int = 5) -> np.ndarray:
        """(N, k) the indices of each image's k nearest gallery images, nearest first."""
        return np.argsort(self.distances(images), axis=1, kind="stable")[:, :k]


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, G) Euclidean distances."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def top_k(ranks: np.ndarray, k: int) -> float:
    """The share of images whose target is among their k nearest."""
    return float(np.mean(np.asarray(ranks) < k))
