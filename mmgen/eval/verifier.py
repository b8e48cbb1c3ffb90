"""A learned check on the scene judge's shape: would a person call this object the shape the fit names?

The judge (`mmgen.eval.judge`) names the spec shape that best overlaps an object, however badly it is drawn. A
threshold on how well it fits cannot tell a lumpy small star a person still names from a star missing a point
(docs/judge.md). The verifier is a small CNN that looks at the object's coverage map, cropped around the object
and scaled so that every object fills the crop alike, and gives the probability of each of the six shapes and of
"none". It is trained only on drawings (`mmgen.eval.verifier_data`: spec shapes with the soft, lumpy edges of
generated images, against wrong drawings and blobs) and calibrated against a person's labels of generated images.

    verifier = ShapeVerifier.from_pretrained("assets/shape-verifier")
    probs = verifier.shape_probs([object_crop(alpha)])          # (N, 7): SHAPES then "none"

Dimension letters: N objects, H x W the judge's 64-px canvas, C the crop's side (CROP).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from scipy import ndimage
from torch import nn

from ..data.shapes import SHAPES
from ..model_paths import ASSETS

CROP = 32  # the crop's side, pixels
FILL = 0.6  # the object's box side (coverage >= 0.5) spans this share of the crop
CLASSES = (*SHAPES, "none")
DEFAULT_VERIFIER = str(ASSETS / "shape-verifier")


def object_crop(alpha: np.ndarray) -> np.ndarray:
    """(C, C) float32: an object's (H, W) coverage map around the centre of its box (coverage >= 0.5), scaled so
    that the box's longer side spans FILL of the crop (bilinear; outside the canvas counts as uncovered)."""
    ys, xs = np.nonzero(alpha >= 0.5)
    if len(xs) == 0:
        return np.zeros((CROP, CROP), np.float32)
    side = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    step = side / (FILL * CROP)  # canvas pixels per crop pixel
    grid = (np.arange(CROP) + 0.5 - CROP / 2) * step  # offsets of the crop's pixel centres
    rows, cols = np.meshgrid(cy + grid - 0.5, cx + grid - 0.5, indexing="ij")  # pixel i's centre is at i + 0.5
    return ndimage.map_coordinates(alpha, [rows, cols], order=1, mode="constant", cval=0.0).astype(np.float32)


class ShapeVerifier(ModelMixin, ConfigMixin):
    """(N, 1, C, C) crops -> (N, 7) logits over SHAPES and "none". Four 3x3 conv blocks (stride 2 from the
    second), global average pooling and a linear layer: ~60k parameters, ~1 ms an object on a CPU."""

    @register_to_config
    def __init__(self, width: int = 32, threshold: float = 0.5):
        # threshold: the least probability of the fit's shape for the strict reading to keep it, calibrated on a
        # person's labels (`mmgen.eval.train_verifier`); stored with the weights so the two always go together.
        super().__init__()
        chans = [1, width // 2, width, 2 * width, 2 * width]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=1 if k == 0 else 2, padding=1), nn.GroupNorm(4, b), nn.SiLU())
            for k, (a, b) in enumerate(zip(chans, chans[1:]))
        )
        self.head = nn.Linear(chans[-1], len(CLASSES))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        h = crops
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(dim=(2, 3)))

    @torch.no_grad()
    def shape_probs(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 7) probabilities of SHAPES and "none" for a list of `object_crop`s."""
        if not crops:
            return np.zeros((0, len(CLASSES)), np.float32)
        x = torch.from_numpy(np.stack(crops)[:, None]).to(self.device, self.dtype)
        return F.softmax(self(x).float(), dim=-1).cpu().numpy()

    def shape_prob(self, alpha: np.ndarray, shape: str) -> float:
        """The probability that a person calls this object (its (H, W) coverage map) `shape`."""
        return float(self.shape_probs([object_crop(alpha)])[0, CLASSES.index(shape)])


_LOADED: dict[str, ShapeVerifier] = {}


def load_verifier(path: str = DEFAULT_VERIFIER) -> ShapeVerifier:
    """The verifier at `path` (loaded once per process), in eval mode on the CPU."""
    if path not in _LOADED:
        if not (Path(path) / "config.json").exists():
            raise FileNotFoundError(
                f"no shape verifier at {path}: the strict judge needs one (`make shape-verifier` trains it)"
            )
        _LOADED[path] = ShapeVerifier.from_pretrained(path).eval()
    return _LOADED[path]
