from pathlib import Path

import numpy as np
import pytest

from mmgen.captioning import SceneCaption
from mmgen.data.shapes import BACKGROUNDS, POSITION_WORDINGS, SIZES, relation, shapes_annotation
from mmgen.eval.prompts import TUNE_REWORDING, single_prompts, two_object_prompts
from mmgen.scene_parse import parse_scene
from mmgen.vocabulary import Vocabulary

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "mmgen-base"


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.for_model(SHIPPED)


@pytest.fixture(scope="module")
def encoder():
    from mmgen.models.text_encoder import load_text_encoder

    return load_text_encoder()


def test_every_training_caption_reads_as_its_scene(vocab):
    """Training's own wordings ("at top left", "near the bottom", "a picture of", ", gray background") are read
    slot by slot as the scene drawn: each object's colour and shape, and the place, relation and background when
    the caption says them."""
    for index in range(300):
        labels, text = shapes_annotation(1, index)
        scene = parse_scene(text, vocab)
        assert scene is not None, text
        objects = labels["objects"]
        assert [(o.color, o.shape) for o in scene.objects] == [(o["color"], o["shape"]) for o in objects], text
        said_background = any(w in BACKGROUNDS for w in text.split())
        assert scene.background == (labels["background"] if said_background else None), text
        if len(objects) == 1:
            said_place = any(w in text for w in POSITION_WORDINGS[objects[0]["position"]])
            said_size = any(f"{size} " in text for size in SIZES)
            assert scene.objects[0].position == (objects[0]["position"] if said_place else None), text
            assert scene.objects[0].size == (objects[0]["size"] if said_size else None), text
        else:
            assert scene.relation in relation(*objects), text


def test_canonical_prompts_come_back_unchanged(vocab):
    rng = np.random.default_rng(0)
    for item in single_prompts(50, rng) + two_object_prompts(50, rng):
        for obj in item["objects"]:
            obj.setdefault("size", None)
        assert parse_scene(item["prompt"], vocab).text == SceneCaption.from_labels(item).text == item["prompt"]


def test_the_tuning_rewordings_read_as_their_scenes(vocab, encoder):
    """The sweep's reworded prompts (places said in words training never used) come back as the canonical prompt
    of the same scene; `in_known_words` says them so."""
    for item in single_prompts(60, np.random.default_rng(1), TUNE_REWORDING):
        want = SceneCaption.from_labels(item).text
        assert vocab.in_known_words(item["prompt"], encoder) == want, item["prompt"]


@pytest.mark.parametrize(
    "prompt, read",
    [
        ("draw a big blue circle up high on the left", "a large blue circle in the top left"),
        ("a red circle at the right side", "a red circle on the right"),  # "side" is nearest "left": typed wins
        ("a red circle at the top edge", "a red circle at the top"),  # "edge" is nearest "diamond": not a noun
        ("a star, yellow, in the middle of the left", "a yellow star on the left"),  # a side beats "middle"
        ("a circle, red, above a square", "a red circle above a square"),  # a colour after its shape
        ("a red circle above a blue rectangle", "a red circle above a blue square"),  # a guessed noun: an object
        ("a red circle to the left of and above a blue square", "a red circle to the left of a blue square"),
        (
            "a green diamond on top of an orange triangle, grey backdrop",
            "a green diamond above a orange triangle on a gray background",
        ),
    ],
)
def test_wordings_people_type(vocab, encoder, prompt, read):
    scene = parse_scene(prompt, vocab, encoder)
    assert (scene.text if scene else None) == read


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "!!!",
        "a cat on a sofa",  # no shape
        "a red circle, a blue square and a green star",  # three objects: the grammar has at most two
        "a red circle and a blue square",  # two objects with no relation
        "a red circle next to a blue square",  # related only by a guess ("next" is nearest "above")
        "a red blue circle",  # two colours for one object
        "a red circle, blue",  # ... said on either side of it
        "a red circle in the top left at the bottom",  # a typed contradiction
        "a red circle left of and right of a blue square",  # ... between two objects
        "a gray circle on a white background",  # an object colour shapes-v1 never paints
    ],
)
def test_scenes_the_grammar_cannot_say_are_not_read(vocab, encoder, prompt):
    assert parse_scene(prompt, vocab, encoder) is None


def test_guesses_that_disagree_are_dropped(vocab, encoder):
    assert vocab.suggestions("upper", encoder) == ["top"] and vocab.suggestions("lower", encoder) == ["bottom"]
    assert parse_scene("a red circle, upper and lower", vocab, encoder).text == "a red circle"


def test_in_known_words_falls_back_to_word_by_word(vocab, encoder):
    """What the grammar cannot say is rewritten word by word, as for a model trained on other captions."""
    assert vocab.in_known_words("a red circle and a blue square", encoder) == "a red circle and a blue square"
    assert vocab.in_known_words("a tiny pink cross under a cyan square", encoder) == (
        "a small pink cross below a cyan square"  # "under" is nearest "below", but guesses relate nothing
    )
