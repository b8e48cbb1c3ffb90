"""Score the judge's reading of a generated image against the prompt it was drawn for.

Every function here takes what `mmgen.eval.judge.read_scene` read from an image (a "read scene") and the prompt
item of `mmgen.eval.prompts` it was drawn for; none of them touches a model. A named object is found by its
colour (shapes-v1 never repeats a colour in a scene). `shape_errors` says where the shape errors come from (by
size; confusions; binding or blob), and `extra_objects` how often an image holds more objects than its prompt
names (such an image fails "all"). Shares are fractions in [0, 1].
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from ..data.shapes import SHAPES, SIZES, relation, sample_labels
from .prompts import PromptItem

Pairs = list[tuple[dict, PromptItem]]  # (read scene, prompt item) per image
OUTCOMES = ("own shape", "other object's shape", "a third shape", "not found")


def _find(read: dict, color: str) -> dict | None:
    return next((o for o in read["objects"] if o["color"] == color), None)


def score_single(read: dict, item: PromptItem) -> dict[str, bool]:
    """Each attribute of a one-object prompt right or not, and `all`: every one right and no other object."""
    want = item["objects"][0]
    got = _find(read, want["color"]) or (read["objects"][0] if read["objects"] else None)
    res = {
        "color": got is not None and got["color"] == want["color"],
        "background": read["background"] == item["background"],
    }
    for k in ("shape", "size", "position"):
        res[k] = got is not None and got[k] == want[k]
    res["all"] = all(res.values()) and len(read["objects"]) == 1
    return res


def score_two(read: dict, item: PromptItem) -> dict[str, bool]:
    """Both colours found, both shapes right, the relation true, exactly two objects, the background asked for,
    and `all` of these (the background too: the right pair on the wrong background is not what was asked)."""
    a, b = item["objects"]
    ga, gb = _find(read, a["color"]), _find(read, b["color"])
    both = ga is not None and gb is not None
    rel_ok = both and item["relation"] in relation(ga, gb)
    shapes_ok = both and ga["shape"] == a["shape"] and gb["shape"] == b["shape"]
    count_ok = len(read["objects"]) == 2  # no object drawn twice, no third one
    background_ok = read["background"] == item["background"]
    return {
        "colors": both,
        "shapes": shapes_ok,
        "relation": rel_ok,
        "count": count_ok,
        "background": background_ok,
        "all": both and shapes_ok and rel_ok and count_ok and background_ok,
    }


def mean_scores(pairs: Pairs, scorer: Callable[[dict, PromptItem], dict[str, bool]]) -> dict:
    """The share of images right on each of `scorer`'s measures, and `n`, the number of images."""
    scores = [scorer(read, item) for read, item in pairs]
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]} | {"n": len(pairs)}


def shape_errors(single: Pairs, two: Pairs) -> dict:
    """Where shape errors come from. Single objects: shape accuracy by the size asked for, and each confusion
    ("star -> diamond") with its count. Two objects: what each named object came out as: its own shape, the other
    object's (a binding error), a third shape (often a blob that fits no shape well), or not found (no blob of its
    colour). An object not found counts as a wrong shape. The two-object prompts leave size free:
    `two_size_drawn` is how often each found object is read small or large, beside `two_size_in_data`, the same
    shares in shapes-v1's own two-object scenes (`two_object_size_shares`), and `two_shape_by_size_drawn` each
    found object's shape accuracy by the size it was drawn at."""
    by_size, confusions, outcomes = defaultdict(list), Counter(), Counter()
    by_drawn_size = defaultdict(list)
    for read, item in single:
        want = item["objects"][0]
        got = _find(read, want["color"])
        by_size[want["size"]].append(got is not None and got["shape"] == want["shape"])
        if got is not None and got["shape"] != want["shape"]:
            confusions[f"{want['shape']} -> {got['shape']}"] += 1
    for read, item in two:
        for want, other in zip(item["objects"], item["objects"][::-1]):
            got = _find(read, want["color"])
            if got is None:
                outcomes["not found"] += 1
                continue
            by_drawn_size[got["size"]].append(got["shape"] == want["shape"])
            if got["shape"] == want["shape"]:
                outcomes["own shape"] += 1
            else:
                outcomes["other object's shape" if got["shape"] == other["shape"] else "a third shape"] += 1
    n, found = sum(outcomes.values()), sum(len(v) for v in by_drawn_size.values())
    return {
        "single_shape_by_size": {size: float(np.mean(v)) for size, v in sorted(by_size.items())},
        "single_confusions": dict(confusions.most_common()),
        "two_per_object": {k: outcomes[k] / n for k in OUTCOMES} if n else {},
        "two_size_drawn": {s: len(by_drawn_size.get(s, [])) / found for s in SIZES} if found else {},
        "two_size_in_data": two_object_size_shares() if found else {},
        "two_shape_by_size_drawn": {s: float(np.mean(v)) for s, v in sorted(by_drawn_size.items())},
        "two_shape_by_shape": shape_by_shape(two),
    }


def shape_by_shape(two: Pairs) -> dict[str, float]:
    """From two-object pairs: how often each named object comes out in its own shape, by the shape asked for (an
    object not found counts as wrong), in shapes-v1's order of shapes."""
    hits = defaultdict(list)
    for read, item in two:
        for want in item["objects"]:
            got = _find(read, want["color"])
            hits[want["shape"]].append(got is not None and got["shape"] == want["shape"])
    return {shape: float(np.mean(hits[shape])) for shape in SHAPES if hits[shape]}


def two_object_size_shares(n_scenes: int = 4000, seed: int = 0) -> dict[str, float]:
    """The share of small and large objects in shapes-v1's two-object scenes (sampled labels, not images).
    Sizes are drawn uniformly, but a large shape never sits next to another object, so more are small."""
    return dict(_two_object_size_shares(n_scenes, seed))


@functools.cache
def _two_object_size_shares(n_scenes: int, seed: int) -> tuple[tuple[str, float], ...]:  # a tuple: cached
    rng, sizes = np.random.default_rng(seed), Counter()
    while sum(sizes.values()) < 2 * n_scenes:
        labels = sample_labels(rng)
        if len(labels["objects"]) == 2:
            sizes.update(o["size"] for o in labels["objects"])
    return tuple((s, sizes[s] / (2 * n_scenes)) for s in SIZES)


def extra_objects(pairs: Pairs) -> dict[str, float]:
    """The share of images with more objects than the prompt names, and the share where a named object is drawn
    twice (shapes-v1 never repeats a colour in a scene, so two objects of one colour are a duplicate; the other
    object may then be missing)."""
    extra = [len(read["objects"]) > len(item["objects"]) for read, item in pairs]
    twice = [
        any(sum(o["color"] == want["color"] for o in read["objects"]) > 1 for want in item["objects"])
        for read, item in pairs
    ]
    return {"more objects than named": float(np.mean(extra)), "a named object drawn twice": float(np.mean(twice))}
