"""The generator's scoring, checked on rendered ground truth: a perfect generator must score 100 %."""

import numpy as np

from mmgen.data.shapes import POSITIONS, SIZES, render_scene
from mmgen.eval.eval_generator import score_single, score_two, single_prompts, two_object_prompts
from mmgen.eval.judge import read_scene


def _render(item):
    objects = [dict(o, size=o.get("size", "small"), center=list(POSITIONS[o["position"]]),
                    side=SIZES[o.get("size", "small")]) for o in item["objects"]]  # fmt: skip
    return render_scene({"background": item["background"], "objects": objects})


def test_single_object_scoring_is_perfect_on_ground_truth():
    items = single_prompts(60, np.random.default_rng(0))
    assert all(score_single(read_scene(_render(it)), it)["all"] for it in items)


def test_paraphrases_differ_from_the_template():
    items = single_prompts(30, np.random.default_rng(0), paraphrase=True)
    assert not any(" on a " in it["prompt"] and " background" in it["prompt"] for it in items)


def test_two_object_scoring_is_perfect_on_ground_truth():
    items = two_object_prompts(40, np.random.default_rng(1))
    assert all(score_two(read_scene(_render(it)), it)["all"] for it in items)


def test_scoring_notices_a_wrong_scene():
    item = single_prompts(1, np.random.default_rng(2))[0]
    wrong = dict(item, objects=[dict(item["objects"][0], shape="star" if item["objects"][0]["shape"] != "star"
                                     else "circle")])  # fmt: skip
    assert not score_single(read_scene(_render(wrong)), item)["shape"]
