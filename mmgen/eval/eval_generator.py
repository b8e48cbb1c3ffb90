"""Evaluate the text-to-image pipeline with the scene judge; print a per-attribute table and write JSON.

    mmgen eval-generator --model assets/mmgen-base --out eval/generator.json

Prompts are written here for evaluation, drawn from their own seed, never read from training captions:
- single: one object, every attribute named ("a large red circle in the top left on a white background");
- two: two objects and a relation ("a red circle to the left of a blue square on a black background");
- free: attributes left out ("a red circle"): how many different cells appear over 16 seeds;
- paraphrased: the single-object facts in wordings the training templates never use.
One image per prompt with the pipeline's default settings; the judge (`mmgen.eval.judge`) reads each image.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ..data.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, cell_of, relation
from . import write_results
from .judge import read_scene

EVAL_SEED = 12345
PARAPHRASES = [  # wordings absent from the training templates
    "{size} {color} {shape}, placed {where}, with a plain {bg} backdrop",
    "draw one {size} {color} {shape} {where} against {bg}",
    "{where_cap} there is a {size} {color} {shape}; the background is {bg}",
]
WHERE = {
    "top left": "in the upper left corner", "top": "at the top edge", "top right": "in the upper right corner",
    "left": "at the left side", "center": "right in the middle", "right": "at the right side",
    "bottom left": "in the lower left corner", "bottom": "along the bottom",
    "bottom right": "in the lower right corner",
}  # fmt: skip
PREPOSITION = {"top": "at the", "bottom": "at the", "left": "on the", "right": "on the"}


def _where(position: str) -> str:
    return f"{PREPOSITION.get(position, 'in the')} {position}"


def single_prompts(n: int, rng: np.random.Generator, paraphrase: bool = False) -> list[dict]:
    items = []
    for _ in range(n):
        obj = {"color": str(rng.choice(list(COLORS))), "shape": str(rng.choice(SHAPES)),
               "size": str(rng.choice(list(SIZES))), "position": str(rng.choice(list(POSITIONS)))}  # fmt: skip
        bg = str(rng.choice(list(BACKGROUNDS)))
        if paraphrase:
            template = str(rng.choice(PARAPHRASES))
            where = WHERE[obj["position"]]
            text = template.format(where=where, where_cap=where[0].upper() + where[1:], bg=bg, **obj)
        else:
            text = f"a {obj['size']} {obj['color']} {obj['shape']} {_where(obj['position'])} on a {bg} background"
        items.append({"prompt": text, "background": bg, "objects": [obj]})
    return items


def two_object_prompts(n: int, rng: np.random.Generator) -> list[dict]:
    phrases = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
    items = []
    while len(items) < n:
        a_pos, b_pos = (str(p) for p in rng.choice(list(POSITIONS), size=2, replace=False))
        a = {"color": "", "shape": str(rng.choice(SHAPES)), "position": a_pos}
        b = {"color": "", "shape": str(rng.choice(SHAPES)), "position": b_pos}
        a["color"], b["color"] = (str(c) for c in rng.choice(list(COLORS), size=2, replace=False))
        rel = str(rng.choice(relation(a, b)))
        bg = str(rng.choice(list(BACKGROUNDS)))
        text = f"a {a['color']} {a['shape']} {phrases[rel]} a {b['color']} {b['shape']} on a {bg} background"
        items.append({"prompt": text, "background": bg, "objects": [a, b], "relation": rel})
    return items


def _find(read: dict, color: str):
    return next((o for o in read["objects"] if o["color"] == color), None)


def score_single(read: dict, item: dict) -> dict:
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


def score_two(read: dict, item: dict) -> dict:
    a, b = item["objects"]
    ga, gb = _find(read, a["color"]), _find(read, b["color"])
    both = ga is not None and gb is not None
    rel_ok = both and item["relation"] in relation(ga, gb)
    shapes_ok = both and ga["shape"] == a["shape"] and gb["shape"] == b["shape"]
    return {"colors": both, "shapes": shapes_ok, "relation": rel_ok, "all": both and shapes_ok and rel_ok}


def _generate(pipe, prompts: list[str], seeds: list[int], batch_size: int):
    images = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch_size]]
        images += pipe(prompts[i : i + batch_size], generator=gens).images
    return images


def evaluate(pipe, n_single: int = 144, n_two: int = 64, n_paraphrase: int = 72, batch_size: int = 16) -> dict:
    rng = np.random.default_rng(EVAL_SEED)
    pipe.set_progress_bar_config(disable=True)
    results = {}
    for name, items in (("single", single_prompts(n_single, rng)),
                        ("paraphrased", single_prompts(n_paraphrase, rng, paraphrase=True))):  # fmt: skip
        images = _generate(pipe, [it["prompt"] for it in items], list(range(len(items))), batch_size)
        scores = [score_single(read_scene(im), it) for im, it in zip(images, items)]
        results[name] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]} | {"n": len(items)}
    items = two_object_prompts(n_two, rng)
    images = _generate(pipe, [it["prompt"] for it in items], list(range(len(items))), batch_size)
    scores = [score_two(read_scene(im), it) for im, it in zip(images, items)]
    results["two"] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]} | {"n": len(items)}

    free = {}
    for prompt in ("a red circle", "a blue square", "a small green star", "a large yellow triangle"):
        reads = [read_scene(im) for im in _generate(pipe, [prompt] * 16, list(range(16)), batch_size)]
        cells = {cell_of(o["position"]) for r in reads for o in r["objects"][:1]}
        free[prompt] = len(cells)
    results["free"] = {"distinct_cells_over_16_seeds": free, "min": min(free.values())}
    results["paraphrase_gap"] = {"all": results["single"]["all"] - results["paraphrased"]["all"]}
    return results


TARGETS = {("single", "color"): 0.97, ("single", "shape"): 0.90, ("single", "size"): 0.90,
           ("single", "position"): 0.90, ("single", "background"): 0.98, ("single", "all"): 0.80,
           ("two", "all"): 0.60, ("free", "min"): 5}  # fmt: skip


def format_table(results: dict) -> str:
    lines = [f"{'set':<13}{'metric':<12}{'value':>8}{'target':>9}  ok", "-" * 46]
    for name, metrics in results.items():
        for metric, value in metrics.items():
            if isinstance(value, dict) or metric == "n":
                continue
            target = TARGETS.get((name, metric))
            ok = "" if target is None else ("yes" if value >= target else "NO")
            lines.append(f"{name:<13}{metric:<12}{value:>8.3f}{'' if target is None else f'>= {target}':>9}  {ok}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    from ..pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(args.model)
    results = evaluate(pipe, n_single=args.n_single, n_two=args.n_two, n_paraphrase=args.n_paraphrase)
    results["settings"] = {"model": str(args.model), "steps": 20, "scheduler": type(pipe.scheduler).__name__}
    print(format_table({k: v for k, v in results.items() if k != "settings"}))
    write_results(results, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default="assets/mmgen-base")
    p.add_argument("--n-single", type=int, default=144)
    p.add_argument("--n-two", type=int, default=64)
    p.add_argument("--n-paraphrase", type=int, default=72)
    p.add_argument("--out", default="eval/generator.json")
    return p
