"""The deliberately wrong drawings the scene judge is checked against (`mmgen.eval.deformed`)."""

import numpy as np
import pytest

from mmgen.data.shapes import BACKGROUNDS, render_scene
from mmgen.eval.deformed import DEFORMATIONS, deformed_sample


@pytest.mark.parametrize("kind", list(DEFORMATIONS))
def test_each_deformation_breaks_its_shape_visibly(kind):
    for index in range(5):
        sample = deformed_sample(kind, seed=0, index=index)
        right = render_scene({k: v for k, v in sample.labels.items() if k != "deformation"})
        a, b = np.asarray(sample.image, dtype=np.int16), np.asarray(right, dtype=np.int16)
        assert sample.image.size == (64, 64) and sample.labels["deformation"] == kind
        assert tuple(a[0, 0]) == BACKGROUNDS[sample.labels["background"]]  # the object stays off the corners
        changed = (np.abs(a - b).max(axis=-1) > 64).sum()  # pixels where the drawing is plainly not the shape
        assert changed >= 4, (kind, index, changed)
        assert np.array_equal(a, np.asarray(deformed_sample(kind, seed=0, index=index).image))  # seeded


def test_deformations_at_128_pixels_are_the_64_pixel_ones_with_lengths_doubled():
    for kind in DEFORMATIONS:
        small, big = deformed_sample(kind, 1, 2), deformed_sample(kind, 1, 2, scale=2)
        assert big.image.size == (128, 128) and big.labels == small.labels
        down = np.asarray(big.image, dtype=np.float32).reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
        assert np.abs(down - np.asarray(small.image, dtype=np.float32)).mean() < 1.5
