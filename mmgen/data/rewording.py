"""More ways to say a shapes-v1 scene, for training the generator on the wordings people type.

shapes-v1's captions come from a few templates that always name the object first and its place after it, so a
generator trained on them alone follows "a red circle in the top left" but loses the place in "top left: a red
circle" or "you can see a big red circle, top-left". `reword(labels, rng)` writes the same facts in many frames
(place first, background first, "you can see ...", rows and columns), with synonyms for places, sizes and
relations. `mmgen train-generator --rewordings K` encodes K of them beside each scene's own caption and trains on
one of them at random per sample.

The evaluation's reworded prompts (held-out and tuning, `mmgen.eval.prompts`) test wordings that training never
shows, so no word of theirs that shapes-v1's own captions lack is used here (tests/test_rewording.py checks it).
"""

from __future__ import annotations

import numpy as np

from .shapes import relation


def _split(position: str) -> tuple[str, str]:
    """("top" | "" | "bottom", "left" | "" | "right") of a shapes-v1 position name ("center" is ("", ""))."""
    words = position.split()
    row = next((w for w in words if w in ("top", "bottom")), "")
    col = next((w for w in words if w in ("left", "right")), "")
    return row, col


def place_phrases(position: str) -> list[str]:
    """Ways to say where a shapes-v1 cell is, each a phrase that follows the object ("... in the top left")."""
    row, col = _split(position)
    if row and col:
        return [
            f"in the {row} {col}",
            f"at the {row} {col}",
            f"{row}-{col}",
            f"in the {row}-{col}",
            f"at the {row} on the {col}",
            f"{row}most on the {col}",
            f"in the {row} row, on the {col}",
            f"in the {row} {col} area",
            f"in the {row} {col} of the picture",
        ]
    if row:
        return [
            f"at the {row}",
            f"near the {row}",
            f"{row} center",
            f"{row} centre",
            f"at the {row} middle",
            f"in the {row} row, in the middle",
            f"{row}most, in the center",
            f"at the {row} of the picture",
        ]
    if col:
        return [
            f"on the {col}",
            f"at the {col}",
            f"far {col}",
            f"to the {col}",
            f"middle {col}",
            f"on the {col}, halfway",
            f"in the middle row, on the {col}",
            f"at the {col} of the picture",
        ]
    return [
        "in the center",
        "in the centre",
        "in the middle",
        "centered",
        "centred",
        "at the center",
        "dead center",
        "in the middle of the picture",
    ]


_SIZE = {"small": ["small", "small", "little"], "large": ["large", "large", "big"]}
_BACKGROUND = [
    " on a {} background",
    " on {}",
    ", {} background",
    " with a {} background",
    " on a {} canvas",
    ", background {}",
]
_SINGLE_FRAMES = [  # {obj} "a large red circle", {where} a place phrase, {bg} a background phrase or ""
    "{obj} {where}{bg}",
    "{where}, {obj}{bg}",
    "{obj}, {where}{bg}",
    "you can see {obj} {where}{bg}",
    "{where} you see {obj}{bg}",
    "an image showing {obj} {where}{bg}",
    "{obj} sitting {where}{bg}",
]
_SINGLE_FRAMES_BG_FIRST = [  # {bg_word} the background colour alone
    "a {bg_word} picture with {obj} {where}",
    "{bg_word} background, {obj} {where}",
]
_RELATION = {
    "left of": ["to the left of", "left of", "on the left of"],
    "right of": ["to the right of", "right of", "on the right of"],
    "above": ["above", "higher than"],
    "below": ["below", "under", "beneath", "underneath"],
}


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return str(options[rng.integers(len(options))])


def _object(obj: dict, rng: np.random.Generator, with_size: bool) -> str:
    words = ([_pick(_SIZE[obj["size"]], rng)] if with_size else []) + [obj["color"], obj["shape"]]
    return "a " + " ".join(words)


def reword(labels: dict, rng: np.random.Generator) -> str:
    """A caption of the scene `labels` (shapes-v1's) in a frame and words shapes-v1's templates do not use. As in
    shapes-v1, every object's colour and shape is named; size, place and background are left out at random."""
    with_bg = rng.random() < 0.7
    bg = _pick(_BACKGROUND, rng).format(labels["background"]) if with_bg else ""
    objects = labels["objects"]
    if len(objects) == 2:
        a, b = objects
        rel = _pick(_RELATION[_pick(relation(a, b), rng)], rng)
        obj_a, obj_b = (_object(o, rng, with_size=rng.random() < 0.5) for o in (a, b))
        if rng.random() < 0.5:
            return f"{obj_a} {rel} {obj_b}{bg}"
        return f"{obj_a} and {obj_b}, the {a['color']} shape {rel} the {b['color']} shape{bg}"
    obj = objects[0]
    text = _object(obj, rng, with_size=rng.random() < 0.7)
    if rng.random() < 0.2:  # the place left out, as in 30 % of shapes-v1's captions: a colour and shape suffice
        return text + bg
    where = _pick(place_phrases(obj["position"]), rng)
    fields = {"obj": text, "where": where, "bg": bg}
    if with_bg and rng.random() < 0.25:
        return _pick(_SINGLE_FRAMES_BG_FIRST, rng).format(bg_word=labels["background"], **fields)
    return _pick(_SINGLE_FRAMES, rng).format(**fields)
