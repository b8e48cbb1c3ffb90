"""`mmgen eval-caption`: the generator read backwards, as a captioner, on held-out shapes-v1 scenes.

    mmgen eval-caption --model assets/mmgen-base-64 --out assets/mmgen-base-64/eval_caption.json
    mmgen eval-caption --model assets/mmgen-base --tune     # how many timesteps and noises, on tuning scenes

Two measures (`mmgen.captioning`; docs/captioning.md):
- ranking: the scene's true caption among 7 distractors that each change one attribute (the background, an
  object's colour, shape, size or position, or the relation of two objects): how often `rank_captions` puts the
  truth first, and how often each kind of distractor beat it;
- captioning: the caption `caption()` builds, read back attribute by attribute against the scene's labels.
The scenes are shapes-v1's, drawn from a stream that no training run or other evaluation reads, rendered and then
encoded by the tokenizer (no generated image is involved), so the figures measure the DiT as a reader. --tune
scores every caption at each (timestep, noise) of a grid on another stream's scenes and prints the accuracy of
each subset, which is how RANK_TIMESTEPS and RANK_NOISES were chosen.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..captioning import (
    RELATIONS,
    SceneCaption,
    SearchSettings,
    image_latents,
    rank_captions,
    sample_errors,
    search_stages,
)
from ..data.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, relation, render_scene
from ..tokens import SHIPPED_DEFAULT
from . import count, write_results
from .ceiling import ceiling_scenes, scene_scale
from .prompts import warn_unless_shapes

CAPTION_SEED = 3131  # the held-out scenes' shapes-v1 stream: no training run, evaluation or tuning reads it
CAPTION_TUNE_SEED = 3132  # the tuning scenes' stream
NUM_DISTRACTORS = 7
TARGETS = {("single", "top1"): 0.95, ("single", "all"): 0.90}  # ranking top-1, caption all-right
TUNE_TIMESTEPS = tuple(range(50, 1000, 100))  # the grid --tune scores at
TUNE_NOISES = 4


def one_changes(truth: SceneCaption, labels: dict) -> dict[str, list[SceneCaption]]:
    """Every caption that changes one attribute of `truth`, by kind ("color", "1.shape", "relation", ...): an
    object's colour (never to the other object's), shape, size or position, the background, or the relation of
    two objects to one that does not hold."""
    two = len(truth.objects) == 2
    kinds = {
        "background": [SceneCaption(truth.objects, b, truth.relation) for b in BACKGROUNDS if b != truth.background]
    }
    for i, o in enumerate(truth.objects):
        tag = f"{i}." if two else ""
        taken = {p.color for p in truth.objects}
        kinds[tag + "color"] = [truth.with_object(i, color=c) for c in COLORS if c not in taken]
        kinds[tag + "shape"] = [truth.with_object(i, shape=s) for s in SHAPES if s != o.shape]
        kinds[tag + "size"] = [truth.with_object(i, size=s) for s in SIZES if s != o.size]
        if not two:
            kinds["position"] = [truth.with_object(i, position=p) for p in POSITIONS if p != o.position]
    if two:
        holds = set(relation(*labels["objects"]))
        kinds["relation"] = [SceneCaption(truth.objects, truth.background, r) for r in RELATIONS if r not in holds]
    return kinds


def distractors(truth: SceneCaption, labels: dict, rng: np.random.Generator, k: int = NUM_DISTRACTORS):
    """[(kind, caption)]: `k` distinct one-attribute changes, spread over the kinds (one of each kind, in random
    order, before a second of any)."""
    kinds = one_changes(truth, labels)
    order = list(kinds)
    rng.shuffle(order)
    chosen, used = [], set()
    while len(chosen) < k:
        for kind in order:
            pool = [c for c in kinds[kind] if c not in used]
            if pool and len(chosen) < k:
                pick = pool[rng.integers(len(pool))]
                used.add(pick)
                chosen.append((kind, pick))
    return chosen


def drawn(pipe, labels: dict):
    """A scene drawn at the size the model paints (shapes-v1 at 64, 128 or 256 px)."""
    scale = scene_scale(pipe)
    if scale is None:
        raise ValueError(
            f"eval-caption draws shapes-v1 scenes at 64, 128 or 256 px; this model paints {pipe.image_size} px"
        )
    return render_scene(labels, scale)


def scenes(seed: int, n_single: int, n_two: int) -> dict[str, list[tuple[int, dict]]]:
    """{"single", "two"}: (scene number, labels) of the first scenes of each kind in shapes-v1 stream `seed`."""
    drawn = ceiling_scenes(n_single, n_two, seed)
    return {name: list(enumerate(labels for labels, _ in pairs)) for name, pairs in drawn.items()}


def rank_scenes(pipe, seed: int, n_single: int, n_two: int) -> dict:
    """Ranking accuracy per scene set: top1, `beaten_by` (the share of each kind of distractor that scored better
    than the truth, or as well), n and seconds per image (8 captions)."""
    results = {}
    for name, items in scenes(seed, n_single, n_two).items():
        top1, beaten, seconds = [], {}, []
        for i, labels in items:
            truth = SceneCaption.from_labels(labels)
            chosen = distractors(truth, labels, np.random.default_rng([seed, i]))
            captions = [truth.text] + [c.text for _, c in chosen]
            start = time.perf_counter()
            scores = dict(rank_captions(pipe, drawn(pipe, labels), captions))
            seconds.append(time.perf_counter() - start)
            # A tie counts against the truth: a model blind to text scores every caption alike, and the ranking's
            # stable sort, truth first, would otherwise give it every scene.
            top1.append(all(scores[truth.text] < scores[c.text] for _, c in chosen))
            for kind, c in chosen:
                beaten.setdefault(kind.split(".")[-1], []).append(scores[c.text] <= scores[truth.text])
        results[name] = {
            "top1": float(np.mean(top1)),
            "beaten_by": {k: float(np.mean(v)) for k, v in sorted(beaten.items())},
            "n": len(items),
            "seconds_per_image": float(np.mean(seconds)),
        }
    return results


def score_caption(found: SceneCaption, labels: dict) -> dict[str, bool]:
    """Each attribute of a found caption right or not against shapes-v1 labels, and `all`. Objects are matched by
    colour (a scene never repeats one); a relation is right when it holds between the matched objects."""
    truth = labels["objects"]
    res = {"count": len(found.objects) == len(truth), "background": found.background == labels["background"]}
    matched = [next((o for o in found.objects if o.color == t["color"]), None) for t in truth]
    res["color"] = all(m is not None for m in matched)
    for attribute in ("shape", "size") + (("position",) if len(truth) == 1 else ()):
        res[attribute] = all(m is not None and getattr(m, attribute) == t[attribute] for m, t in zip(matched, truth))
    if len(truth) == 2:
        res["relation"] = False
        if res["count"] and res["color"]:
            a_first = found.objects[0].color == truth[0]["color"]
            res["relation"] = found.relation in relation(*(truth if a_first else truth[::-1]))
    res["all"] = all(res.values())
    return res


def caption_scenes(pipe, seed: int, n_single: int, n_two: int, settings: SearchSettings = SearchSettings()) -> dict:
    """`caption()`'s accuracy per attribute per scene set, with n, seconds and captions scored per caption; with
    `settings.refine`, also the greedy pass's accuracy alone ("greedy": the search's first pass, from the same
    run)."""
    results = {}
    for name, items in scenes(seed, n_single, n_two).items():
        scores, seconds, scored = {"greedy": [], "refined": []}, [], []
        for _, labels in items:
            start = time.perf_counter()
            stages = search_stages(pipe, drawn(pipe, labels), settings)
            seconds.append(time.perf_counter() - start)
            scored.append(stages["captions_scored"])
            for stage in scores:
                if stage in stages:
                    scores[stage].append(score_caption(stages[stage][0][0], labels))
        final = scores["refined"] or scores["greedy"]
        results[name] = {k: float(np.mean([s[k] for s in final])) for k in final[0]} | {
            "n": len(items),
            "seconds_per_caption": float(np.mean(seconds)),
            "captions_scored": float(np.mean(scored)),
        }
        if scores["refined"]:
            results[name]["greedy"] = {k: float(np.mean([s[k] for s in scores["greedy"]])) for k in final[0]}
    return results


def tune(pipe, n_single: int, n_two: int, seed: int = CAPTION_TUNE_SEED) -> dict:
    """Ranking top-1 on tuning scenes for timestep subsets of TUNE_TIMESTEPS x 1, 2 and 4 noises, from one pass
    that scores the 8 captions of every scene at the whole grid. Subsets of noises are averaged over the disjoint
    choices (noises 0 | 1 | 2 | 3; 0-1 | 2-3), so each figure rests on more than one draw."""
    subsets = {
        "all 10 (50..950)": list(range(10)),
        "5: 50, 250, .., 850": [0, 2, 4, 6, 8],
        "5: 150, 350, .., 950": [1, 3, 5, 7, 9],
        "6: 450..950": [4, 5, 6, 7, 8, 9],
        "5: 50..450": [0, 1, 2, 3, 4],
    }
    subsets |= {f"t={t} alone": [i] for i, t in enumerate(TUNE_TIMESTEPS)}
    noise_sets = {1: [[0], [1], [2], [3]], 2: [[0, 1], [2, 3]], 4: [[0, 1, 2, 3]]}
    results = {}
    for name, items in scenes(seed, n_single, n_two).items():
        errors = []  # per scene (8 captions, timesteps, noises): the truth first
        for i, labels in items:
            truth = SceneCaption.from_labels(labels)
            captions = [truth.text] + [c.text for _, c in distractors(truth, labels, np.random.default_rng([seed, i]))]
            x0 = image_latents(pipe, drawn(pipe, labels))
            e = sample_errors(pipe, x0, captions, timesteps=TUNE_TIMESTEPS, num_noises=TUNE_NOISES)
            errors.append(e.view(len(captions), len(TUNE_TIMESTEPS), TUNE_NOISES).numpy())
        errors = np.stack(errors)  # (scenes, 8, timesteps, noises)
        results[name] = {"n": len(items)}
        for label, ts in subsets.items():
            row = {}
            for k, choices in noise_sets.items():
                hits = [(errors[:, :, ts][..., ns].mean((2, 3)).argmin(1) == 0).mean() for ns in choices]
                row[f"{k} noise" + ("s" if k > 1 else "")] = float(np.mean(hits))
            results[name][label] = row
    return results


def format_results(results: dict) -> str:
    """The ranking and captioning results as a plain-text table, with the targets."""
    lines = [f"{'measure':<12}{'set':<8}{'metric':<20}{'value':>8}{'target':>9}  ok", "-" * 62]
    for measure in ("ranking", "captioning"):
        for name, metrics in results.get(measure, {}).items():
            for metric, value in metrics.items():
                if isinstance(value, dict) or metric == "n":
                    continue
                target = TARGETS.get((name, metric)) if (measure == "ranking") == (metric == "top1") else None
                ok = "" if target is None else ("yes" if value >= target else "NO")
                shown = f"{value:>7.2f}s" if "seconds" in metric else f"{value:>8.3f}"
                wanted = "" if target is None else f">= {target}"
                lines.append(f"{measure:<12}{name:<8}{metric:<20}{shown}{wanted:>9}  {ok}")
            if "greedy" in metrics:
                greedy = ", ".join(f"{k} {v:.3f}" for k, v in metrics["greedy"].items())
                lines.append(f"{'':<12}{name:<8}the greedy pass alone: {greedy}")
            if "beaten_by" in metrics:
                beaten = ", ".join(f"{k} {v:.1%}" for k, v in metrics["beaten_by"].items())
                lines.append(f"{'':<12}{name:<8}a distractor beat the truth: {beaten} (n {metrics['n']})")
    return "\n".join(lines)


def format_tuning(results: dict) -> str:
    lines = []
    for name, rows in results.items():
        lines.append(f"{name} ({rows['n']} tuning scenes): ranking top-1 by timesteps and noises per timestep")
        for label, row in rows.items():
            if label != "n":
                lines.append(f"  {label:<22}" + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    """The held-out evaluation (or, with `args.tune`, the timestep and noise study); prints tables, writes JSON."""
    from ..pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(args.model)
    warn_unless_shapes(pipe, "eval-caption")
    pipe.set_progress_bar_config(disable=True)
    if args.tune:
        results = {"seed": CAPTION_TUNE_SEED, "tuning": tune(pipe, args.n_single, args.n_two)}
        print(format_tuning(results["tuning"]))
        results["search"] = caption_scenes(pipe, CAPTION_TUNE_SEED, args.n_caption_single, args.n_caption_two)
        print(format_results({"captioning": results["search"]}))
    else:
        results = {
            "seed": CAPTION_SEED,
            "ranking": rank_scenes(pipe, CAPTION_SEED, args.n_single, args.n_two),
            "captioning": caption_scenes(pipe, CAPTION_SEED, args.n_caption_single, args.n_caption_two),
        }
        from ..captioning import RANK_NOISES, RANK_TIMESTEPS

        results["settings"] = {
            "model": str(args.model),
            "timesteps": list(RANK_TIMESTEPS),
            "noises": RANK_NOISES,
            "search": vars(SearchSettings()),
        }
        print(format_results(results))
    write_results(results, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default=SHIPPED_DEFAULT, help="model folder, shipped name or Hub id")
    p.add_argument("--n-single", type=count(1), default=200, help="one-object scenes ranked against distractors")
    p.add_argument("--n-two", type=count(1), default=100, help="two-object scenes ranked against distractors")
    p.add_argument("--n-caption-single", type=count(1), default=100, help="one-object scenes captioned by search")
    p.add_argument("--n-caption-two", type=count(1), default=50, help="two-object scenes captioned by search")
    p.add_argument(
        "--tune", action="store_true", help="on tuning scenes instead: the timestep and noise study, and the search's"
    )
    p.add_argument("--out", help="results JSON (default: eval/caption.json; with --tune, eval/caption_tuning.json)")
    return p
