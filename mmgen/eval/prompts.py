"""The generator evaluation's prompts, written here from shapes-v1's vocabulary and never read from training captions.

Four sets; the first three are drawn, in this order, from one random stream (the tuning set's reworded prompts
from a stream of their own):
- single: one object, every attribute named ("a large red circle in the top left on a white background");
- paraphrased: the single-object facts in wordings training captions never use;
- two: two objects and a relation ("a red circle to the left of a blue square on a black background");
- free: attributes left out ("a red circle"), to count how many cells appear over 16 seeds.
The held-out prompts (EVAL_SEED, FREE_PROMPTS) are only ever reported; the settings sweep draws its own tuning
prompts (TUNE_SEED, TUNE_FREE_PROMPTS), so the defaults are chosen without looking at the reported ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, NotRequired, TypedDict

import numpy as np

from ..data.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, relation

EVAL_SEED = 12345  # the held-out prompts
TUNE_SEED = 777  # the sweep's tuning prompts: drawn apart from the held-out ones
TUNE_REWORDING_SEED = 778  # the sweep's reworded prompts: a stream of their own leaves the others as they were
FREE_PROMPTS = ("a red circle", "a blue square", "a small green star", "a large yellow triangle")
# The sweep's own free prompts (other colours and shapes than FREE_PROMPTS), so that variety counts when the
# defaults are chosen without looking at the reported evaluation's prompts.
TUNE_FREE_PROMPTS = (
    "a green circle",
    "a pink square",
    "a small cyan star",
    "a large orange triangle",
    "a purple diamond",
    "a small blue cross",
)
FREE_SEEDS = 16  # images per free prompt (the results' key "distinct_cells_over_16_seeds" names it)


class Rewording(NamedTuple):
    """Sentence templates ({size} {color} {shape} {where} {where_cap} {bg}) and a phrase per position."""

    templates: tuple[str, ...]
    where: dict[str, str]


# Wordings absent from every training caption (shapes-v1's templates and mmgen.data.shapes._POSITION_PARAPHRASES);
# the held-out set and the tuning set share no word either (tests/test_reworded_prompts.py checks both).
HELDOUT_REWORDING = Rewording(
    templates=(
        "{size} {color} {shape}, placed {where}, with a plain {bg} backdrop",
        "draw one {size} {color} {shape} {where} against {bg}",
        "{where_cap} there is a {size} {color} {shape}; the background is {bg}",
    ),
    where={
        "top left": "in the upper left corner",
        "top": "at the top edge",
        "top right": "in the upper right corner",
        "left": "at the left side",
        "center": "right in the middle",
        "right": "at the right side",
        "bottom left": "in the lower left corner",
        "bottom": "along the bottom",
        "bottom right": "in the lower right corner",
    },
)
# The sweep's reworded prompts, to choose by (`--sweep-n-reworded`; written after the held-out ones, in words of
# their own, places said as unlike training's as the held-out "upper" and "lower").
TUNE_REWORDING = Rewording(
    templates=(
        "{size} {color} {shape} located {where}, {bg} surroundings",
        "a {bg} scene holding a {size} {color} {shape} {where}",
        "{where_cap}: a {size} {color} {shape}, {bg} all around",
    ),
    where={  # rows in words training never uses, as the held-out set's "upper" and "lower"
        "top left": "up high on the left",
        "top": "up high",
        "top right": "up high on the right",
        "left": "over on the left",
        "center": "at the very center",
        "right": "over on the right",
        "bottom left": "down low on the left",
        "bottom": "down low",
        "bottom right": "down low on the right",
    },
)
PREPOSITION = {"top": "at the", "bottom": "at the", "left": "on the", "right": "on the"}
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


class PromptItem(TypedDict):
    """A prompt and the scene it asks for. Each object names its colour, shape and position (a shapes-v1 cell
    name); single-object prompts name the size too. Two-object prompts carry the relation of the first object to
    the second ("left of", "right of", "above", "below")."""

    prompt: str
    background: str
    objects: list[dict]
    relation: NotRequired[str]


def _where(position: str) -> str:
    return f"{PREPOSITION.get(position, 'in the')} {position}"


def single_prompts(n: int, rng: np.random.Generator, rewording: Rewording | None = None) -> list[PromptItem]:
    """`n` one-object prompts naming colour, shape, size, cell and background, in `rewording`'s words if given."""
    items = []
    for _ in range(n):
        obj = {
            "color": str(rng.choice(list(COLORS))),
            "shape": str(rng.choice(SHAPES)),
            "size": str(rng.choice(list(SIZES))),
            "position": str(rng.choice(list(POSITIONS))),
        }
        bg = str(rng.choice(list(BACKGROUNDS)))
        if rewording:
            template = str(rng.choice(rewording.templates))
            where = rewording.where[obj["position"]]
            text = template.format(where=where, where_cap=where[0].upper() + where[1:], bg=bg, **obj)
        else:
            text = f"a {obj['size']} {obj['color']} {obj['shape']} {_where(obj['position'])} on a {bg} background"
        items.append({"prompt": text, "background": bg, "objects": [obj]})
    return items


def two_object_prompts(n: int, rng: np.random.Generator) -> list[PromptItem]:
    """`n` prompts of two objects of different colours in different cells, related by one true relation; the
    size is left free (shapes-v1 never puts a large shape next to another object)."""
    items = []
    while len(items) < n:
        a_pos, b_pos = (str(p) for p in rng.choice(list(POSITIONS), size=2, replace=False))
        a = {"color": "", "shape": str(rng.choice(SHAPES)), "position": a_pos}
        b = {"color": "", "shape": str(rng.choice(SHAPES)), "position": b_pos}
        a["color"], b["color"] = (str(c) for c in rng.choice(list(COLORS), size=2, replace=False))
        rel = str(rng.choice(relation(a, b)))
        bg = str(rng.choice(list(BACKGROUNDS)))
        text = f"a {a['color']} {a['shape']} {RELATION_PHRASES[rel]} a {b['color']} {b['shape']} on a {bg} background"
        items.append({"prompt": text, "background": bg, "objects": [a, b], "relation": rel})
    return items


@dataclass(frozen=True)
class PromptSets:
    """How many prompts of each set to draw, and from which seed. The defaults are the held-out evaluation's."""

    n_single: int = 144
    n_two: int = 256  # 64 left a seed-to-seed spread of 4 to 7 points
    n_reworded: int = 72
    free: tuple[str, ...] = FREE_PROMPTS  # empty: no free prompts
    seed: int = EVAL_SEED
    rewording: Rewording = HELDOUT_REWORDING
    rewording_seed: int | None = None  # None: reworded prompts come from `seed`'s stream, between single and two
    apart: bool = False  # leave out every held-out prompt (the tuning sets: chance drew 13 of 144 single ones twice)

    @classmethod
    def tuning(cls, n_single: int, n_two: int, free: bool, n_reworded: int = 0) -> PromptSets:
        """The sweep's prompts, drawn from TUNE_SEED (the reworded ones, in TUNE_REWORDING's words, from
        TUNE_REWORDING_SEED), with TUNE_FREE_PROMPTS if `free`."""
        free_prompts = TUNE_FREE_PROMPTS if free else ()
        rewording = TUNE_REWORDING
        return cls(n_single, n_two, n_reworded, free_prompts, TUNE_SEED, rewording, TUNE_REWORDING_SEED, apart=True)

    def draw(self) -> dict[str, list[PromptItem]]:
        """The single, paraphrased and two-object prompts, in that order from one stream of `seed` (the reworded
        ones from their own stream if `rewording_seed` is set, so that asking for them changes no other prompt)."""
        rng = np.random.default_rng(self.seed)
        held_out = {p["prompt"] for ps in PromptSets().draw().values() for p in ps} if self.apart else set()

        def drawn(draw, n: int, stream) -> list[PromptItem]:  # `n` prompts of `draw`, none of them held out
            items: list[PromptItem] = []
            while len(items) < n:
                items += [p for p in draw(n - len(items), stream) if p["prompt"] not in held_out]
            return items

        single = drawn(single_prompts, self.n_single, rng)
        own = self.rewording_seed is not None
        stream = np.random.default_rng(self.rewording_seed) if own else rng
        paraphrased = single_prompts(self.n_reworded, stream, self.rewording)  # in words no held-out prompt uses
        return {"single": single, "paraphrased": paraphrased, "two": drawn(two_object_prompts, self.n_two, rng)}


HELDOUT_PROMPTS = PromptSets()
TUNING_PROMPTS = PromptSets.tuning(n_single=48, n_two=32, free=False)  # the sweep's default


def warn_unless_shapes(pipe, command: str) -> None:
    """Say so (stderr) when `pipe`'s generator learnt other captions than shapes-v1's: `command` reads it on
    shapes-v1 prompts and scenes alone, so its figures say how it draws those, not how well it learnt its own data.
    What it trained on: its vocabulary's sources, else its training log's (a model published without a
    vocabulary); silent when neither is beside it."""
    import sys
    from pathlib import Path

    from ..vocabulary import SHAPES_V1, Vocabulary, stage_sources

    vocabulary = Vocabulary.for_pipeline(pipe)
    if vocabulary is not None:
        shapes, trained = vocabulary.grammar == SHAPES_V1, ", ".join(vocabulary.sources) or "other captions"
    else:
        where = getattr(pipe.transformer.config, "_name_or_path", None)
        log = Path(where).parent / "generator_train_log.jsonl" if where else None
        if log is None or not log.is_file():
            return
        folders = [s["data"] for s in stage_sources(log) if s["data"] != "shapes"]
        shapes, trained = not folders, ", ".join(folders)
    if not shapes:
        print(
            f"warning: this generator was trained on {trained}, not shapes-v1 alone; `mmgen {command}` reads it on "
            "shapes-v1 prompts and scenes, so its figures say how it draws those, not how well it learnt its own "
            "images (for those: mmgen eval-retrieval, docs/own-data.md)",
            file=sys.stderr,
        )
