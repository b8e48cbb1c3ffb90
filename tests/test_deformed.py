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


def test_the_strict_judge_names_right_shapes_and_refuses_most_wrong_drawings():
    """Tuning stream 0 is what its settings were chosen on; this is held-out stream 3, a few of each kind."""
    from mmgen.data.shapes import shapes_sample
    from mmgen.eval.judge import NO_SHAPE, read_scene, score_scene

    renders = [shapes_sample(3, i) for i in range(24)]
    assert all(score_scene(read_scene(s.image, strict=True), s.labels)["all"] for s in renders)
    named, lenient_named = 0, 0
    for kind in DEFORMATIONS:
        for index in range(6):
            sample = deformed_sample(kind, seed=3, index=index)
            broken = sample.labels["objects"][0]["shape"]
            named += any(o["shape"] == broken for o in read_scene(sample.image, strict=True)["objects"])
            lenient_named += any(o["shape"] == broken for o in read_scene(sample.image)["objects"])
    assert named <= 0.25 * 6 * len(DEFORMATIONS) < lenient_named  # strict: few; lenient: many more
    blob = deformed_sample("irregular-blob", seed=3, index=0).image
    assert {o["shape"] for o in read_scene(blob, strict=True)["objects"]} <= {NO_SHAPE, "circle"}
