import numpy as np
import pytest
from PIL import Image

from mmgen.data.shapes import POSITIONS, SIZES, render_scene, shapes_sample
from mmgen.eval.judge import read_scene, score_scene


def test_judge_reads_rendered_ground_truth_perfectly():
    results = [score_scene(read_scene(s.image), s.labels) for s in (shapes_sample(5, i) for i in range(200))]
    assert all(r["all"] for r in results), [i for i, r in enumerate(results) if not r["all"]]


def test_judge_notices_wrong_attributes():
    s = shapes_sample(5, 0)
    obj = s.labels["objects"][0]
    wrong = {
        "background": s.labels["background"],
        "objects": [dict(obj, color="green" if obj["color"] != "green" else "red")],
    }
    assert not score_scene(read_scene(render_scene(wrong)), s.labels)["all"]
    target = "top left" if obj["position"] != "top left" else "bottom right"
    moved = {
        "background": s.labels["background"],
        "objects": [dict(obj, position=target, center=list(POSITIONS[target]))],
    }
    assert not score_scene(read_scene(render_scene(moved)), s.labels)["objects"][0]["position"]


@pytest.mark.parametrize("attribute", ["shape", "size", "background"])
def test_judge_notices_a_wrong_shape_size_or_background(attribute):
    """Each attribute alone drawn wrong is read wrong, and the scene is not all right."""
    truth = {
        "background": "gray",
        "objects": [{"shape": "square", "color": "blue", "size": "large", "position": "center", "center": [32, 32]}],
    }
    obj = truth["objects"][0]
    drawn = {
        "shape": dict(truth, objects=[dict(obj, shape="star")]),
        "size": dict(truth, objects=[dict(obj, size="small")]),
    }
    drawn["background"] = dict(truth, background="white")
    scene = drawn[attribute]
    for o in scene["objects"]:
        o["side"] = SIZES[o["size"]]
    result = score_scene(read_scene(render_scene(scene)), truth)
    wrong = result["background"] if attribute == "background" else result["objects"][0][attribute]
    assert not wrong and not result["all"]
    truth["objects"][0]["side"] = SIZES["large"]
    assert score_scene(read_scene(render_scene(truth)), truth)["all"]  # the truth itself reads right


def test_judge_reads_128_px_scenes_and_refuses_other_shapes():
    samples = [shapes_sample(5, i, scale=2) for i in range(40)]
    assert samples[0].image.size == (128, 128)
    assert all(score_scene(read_scene(s.image, strict=True), s.labels)["all"] for s in samples)
    with pytest.raises(ValueError, match="square"):
        read_scene(Image.new("RGB", (128, 100)))


def test_judge_on_an_empty_canvas_finds_no_object():
    read = read_scene(Image.new("RGB", (64, 64), (245, 245, 245)))
    assert read == {"background": "white", "objects": []}
    assert not score_scene(read, shapes_sample(0, 0).labels)["all"]


def test_judge_tolerates_mild_noise():
    s = shapes_sample(5, 3)
    noisy = np.asarray(s.image).astype(int) + np.random.default_rng(0).integers(-8, 9, (64, 64, 3))
    assert score_scene(read_scene(Image.fromarray(noisy.clip(0, 255).astype(np.uint8))), s.labels)["all"]


def test_judge_reads_an_object_drawn_twice_as_two_objects():
    # shapes-v1 never repeats a colour in a scene, so a second blob of one colour is a duplicate, not a fragment
    obj = {"color": "red", "shape": "circle", "size": "small", "side": 16}
    twice = {
        "background": "white",
        "objects": [dict(obj, position="left", center=[14, 32]), dict(obj, position="right", center=[50, 32])],
    }
    read = read_scene(render_scene(twice))
    assert [(o["color"], o["shape"], o["position"]) for o in sorted(read["objects"], key=lambda o: o["center"])] == [
        ("red", "circle", "left"),
        ("red", "circle", "right"),
    ]
    once = {"background": "white", "objects": twice["objects"][:1]}
    assert not score_scene(read, once)["all"] and score_scene(read_scene(render_scene(once)), once)["all"]
