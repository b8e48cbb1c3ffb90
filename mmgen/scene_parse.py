"""A prompt read into shapes-v1's caption grammar: "a tiny red star placed in the upper left corner, white backdrop"
-> "a small red star in the top left on a white background".

A shapes-v1 DiT follows the words it was trained on and hardly anything else (docs/generator-runs.md: rewordings
in training did not teach it new ones). So for such a model `Vocabulary.in_known_words` says a prompt in the
grammar's own words: the scene it asks for, read slot by slot (each object's colour, shape and size, the single
object's cell or the relation of two, the background), written back in the canonical wording (`SceneCaption`).

Words are read one by one. A word the model knows fills its slot; a word it does not know fills a slot only
through the known word nearest it in spelling or meaning (`Vocabulary.suggestions`: "upper" -> "top", "tiny" ->
"small"), and only a slot no typed word filled, so a guess never overrides what was said ("at the right side":
"side" is nearest "left", but "right" was typed). Guesses that disagree are dropped; a guessed shape is an object
only where a noun goes ("a blue rectangle", not "the top edge"); two objects are related only by typed words
("next" is nearest "above"). A scene that cannot be read (no shape, more than two, two colours for one object, a
gray object, two objects with no relation, a typed contradiction such as "top ... bottom") gives None, and the
caller falls back to word-by-word suggestions.

    scene = parse_scene("draw a big blue circle up high on the left", vocabulary, encoder)
    scene.text  # "a large blue circle in the top left"
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .captioning import ObjectCaption, SceneCaption
from .data.shapes import BACKGROUNDS, COLORS, SHAPES, SIZES
from .vocabulary import STOPWORDS, split_words

# Words of a place -> (axis, value). "middle" and "centre" are training's own paraphrases of "center".
PLACE_WORDS = {
    "top": ("vertical", "top"),
    "above": ("vertical", "top"),
    "bottom": ("vertical", "bottom"),
    "below": ("vertical", "bottom"),
    "left": ("horizontal", "left"),
    "right": ("horizontal", "right"),
    "center": ("center", "center"),
    "centre": ("center", "center"),
    "middle": ("center", "center"),
}
# A place said between two objects is the first one's relation to the second.
RELATION_OF = {"top": "above", "bottom": "below", "left": "left of", "right": "right of"}


@dataclass(frozen=True)
class Word:
    """One prompt word read as a slot value: its kind ("color", "shape", "size", "background", or a PLACE_WORDS
    axis), the value, and whether it was typed (a known word) or guessed (the nearest known word to an unknown one)."""

    index: int
    kind: str
    value: str
    typed: bool


def read_word(word: str) -> tuple[str, str] | None:
    """(kind, value) of a word of shapes-v1's grammar, or None for any other word."""
    if word in COLORS:
        return "color", word
    if word in SHAPES:
        return "shape", word
    if word in SIZES:
        return "size", word
    if word in BACKGROUNDS:  # shapes-v1 paints no object white, black or gray: these name the background
        return "background", word
    return PLACE_WORDS.get(word)


def read_words(prompt: str, vocabulary, encoder=None) -> list[Word]:
    """The prompt's words that fill a slot, typed or guessed, in order. A guessed shape counts only where a noun
    goes, after "a" or a colour or size ("a blue rectangle", not "the top edge")."""
    words, previous = [], None
    for index, word in enumerate(split_words(prompt)):
        typed = word in vocabulary.words
        guess = word if typed or word in STOPWORDS else next(iter(vocabulary.suggestions(word, encoder)), None)
        read = read_word(guess) if guess else None
        noun_place = previous in ("a", "an", "one") or (
            words and words[-1].index == index - 1 and words[-1].kind in ("color", "size")
        )
        if read and (typed or read[0] != "shape" or noun_place):
            words.append(Word(index, *read, typed=typed))
        previous = word
    return words


class Unreadable(Exception):
    """The prompt names a scene the grammar cannot say, or names it two ways."""


def settle(words: list[Word]) -> str | None:
    """The one value of a slot: the typed one (two different typed values: Unreadable), else the guesses' value
    when they agree, else None."""
    for typed in (True, False):
        values = {w.value for w in words if w.typed == typed}
        if len(values) > 1 and typed:
            raise Unreadable(f"two {words[0].kind}s: {', '.join(sorted(values))}")
        if len(values) == 1:
            return values.pop()
    return None


def place(words: list[Word]) -> str | None:
    """A single object's cell from the place words: "top left", "top", "left", or "center" when no side is said
    ("the middle of the left side" is the left cell)."""
    by_axis = defaultdict(list)
    for w in words:
        by_axis[w.kind].append(w)
    vertical, horizontal = settle(by_axis["vertical"]), settle(by_axis["horizontal"])
    if vertical or horizontal:
        return " ".join(v for v in (vertical, horizontal) if v)
    return settle(by_axis["center"])


def relation(words: list[Word]) -> Word | None:
    """The first typed side said between two objects ("to the left of", "above"), as the first object's relation
    to the second; a side said both ways ("left ... right") is Unreadable. Guesses never relate two objects:
    MiniLM puts "next" nearest "above"."""
    sides = [w for w in words if w.typed and w.kind in ("vertical", "horizontal")]
    for axis in ("vertical", "horizontal"):
        settle([w for w in sides if w.kind == axis])
    return sides[0] if sides else None


def describe(words: list[Word], start: int, shape: Word, end: int) -> dict:
    """An object's colour, shape and size from the colour and size words said between word indices `start` and
    `end` (exclusive) around its `shape` word: "a large red circle", "a circle, red"."""
    own = [w for w in words if start < w.index < end and w.kind in ("color", "size")]
    color = settle([w for w in own if w.kind == "color"])
    size = settle([w for w in own if w.kind == "size"])
    return {"color": color or "", "shape": shape.value, "size": size}


def parse_scene(prompt: str, vocabulary, encoder=None) -> SceneCaption | None:
    """The scene a prompt asks for, in shapes-v1's grammar, or None when it cannot be read (see the module's
    docstring). `vocabulary`: the model's `Vocabulary`; `encoder`: (tokenizer, text encoder), for guesses by
    meaning."""
    words = read_words(prompt, vocabulary, encoder)
    shapes = [w for w in words if w.kind == "shape"]
    slots = {w.index for w in words if w.kind in ("color", "size", "shape")}
    if not 1 <= len(shapes) <= 2 or any(w.kind == "background" and w.index + 1 in slots for w in words):
        return None  # no object, more than two, or "a gray circle" (shapes-v1 paints none white, black or gray)
    last = len(split_words(prompt))
    try:
        background = settle([w for w in words if w.kind == "background"])
        if len(shapes) == 1:
            obj = describe(words, -1, shapes[0], last)
            where = place([w for w in words if w.kind in ("vertical", "horizontal", "center")])
            return SceneCaption((ObjectCaption(**obj, position=where),), background)
        first, second = shapes
        side = relation([w for w in words if first.index < w.index < second.index])
        if side is None:  # "a red circle and a blue square": the grammar always relates two objects
            return None
        objects = (describe(words, -1, first, side.index), describe(words, side.index, second, last))
    except Unreadable:
        return None
    return SceneCaption(tuple(ObjectCaption(**o) for o in objects), background, RELATION_OF[side.value])
