"""The generator evaluation's targets and its results as plain-text tables (what `mmgen eval-generator` prints).

The model card (`mmgen.model_card`) reads TARGETS to print the same targets.
"""

from __future__ import annotations

TARGETS = {  # (prompt set, metric): the least value that meets the target (a share, or a number of cells)
    ("single", "color"): 0.97,
    ("single", "shape"): 0.90,
    ("single", "size"): 0.90,
    ("single", "position"): 0.90,
    ("single", "background"): 0.98,
    ("single", "all"): 0.80,
    ("two", "all"): 0.60,
    ("free", "min"): 5,
}
# The targets read by the strict judge, the one that agrees with people (docs/judge.md): every attribute right,
# and the reworded prompts' shortfall against the same facts worded as in training, at most MAX_REWORDED_GAP.
STRICT_TARGETS = {"single": 0.90, "two": 0.70}
MAX_REWORDED_GAP = 0.10


def strict_line(strict: dict) -> str:
    """The strict judge's readings against STRICT_TARGETS and MAX_REWORDED_GAP, on one line."""
    parts = []
    for name, figures in strict.items():
        goal = STRICT_TARGETS.get(name)
        met = "" if goal is None else f" (target >= {goal:.0%}: {'yes' if figures['all'] >= goal else 'NO'})"
        parts.append(f"{name} {figures['all']:.1%}{met}")
    if (gap := reworded_gap(strict)) is not None:
        met = "yes" if gap <= MAX_REWORDED_GAP else "NO"
        parts.append(f"reworded gap {100 * gap:.1f} points (target <= {100 * MAX_REWORDED_GAP:.0f}: {met})")
    return "strict judge, every attribute right: " + ", ".join(parts)


def reworded_gap(strict: dict) -> float | None:
    """How much less often the reworded prompts are all right than the same facts worded as in training (single
    objects), by the strict judge; None without both."""
    if "single" in strict and "paraphrased" in strict:
        return strict["single"]["all"] - strict["paraphrased"]["all"]
    return None


def format_table(results: dict) -> str:
    """One row per prompt set and metric (dict-valued entries and counts left out), with its target if any."""
    w = max([13, *(len(name) + 1 for name in results)])
    lines = [f"{'set':<{w}}{'metric':<12}{'value':>8}{'target':>9}  ok", "-" * (w + 33)]
    for name, metrics in results.items():
        for metric, value in metrics.items():
            if isinstance(value, dict) or metric == "n":
                continue
            target = TARGETS.get((name, metric))
            ok = "" if target is None else ("yes" if value >= target else "NO")
            lines.append(f"{name:<{w}}{metric:<12}{value:>8.3f}{'' if target is None else f'>= {target}':>9}  {ok}")
    return "\n".join(lines)


def format_by_shape(by_shape: dict[str, float]) -> str:
    return ", ".join(f"{shape} {acc:.1%}" for shape, acc in by_shape.items())


def top_confusions(errors: dict, k: int = 5) -> str:
    """The k most common single-object shape confusions of `shape_errors`, as "star -> diamond (2), ..."."""
    return ", ".join(f"{pair} ({n})" for pair, n in list(errors["single_confusions"].items())[:k]) or "none"


def format_shape_errors(errors: dict) -> str:
    """`mmgen.eval.scoring.shape_errors` in a few lines of text."""
    sizes = ", ".join(f"{size} {acc:.1%}" for size, acc in errors["single_shape_by_size"].items())
    two = ", ".join(f"{k} {v:.1%}" for k, v in errors["two_per_object"].items())
    text = f"single, shape by size asked: {sizes}; most common confusions: {top_confusions(errors)}"
    if two:
        text += f"\ntwo objects, each object came out as: {two}"
    if errors.get("two_size_drawn"):
        drawn = ", ".join(
            f"{s} {share:.1%} (shapes-v1 {errors['two_size_in_data'][s]:.1%}; its shape right "
            + (f"{errors['two_shape_by_size_drawn'][s]:.1%})" if s in errors["two_shape_by_size_drawn"] else "-)")
            for s, share in errors["two_size_drawn"].items()
        )
        text += f"\ntwo objects, size drawn (the prompts leave it free): {drawn}"
    if errors.get("two_shape_by_shape"):
        text += f"\ntwo objects, own shape by the shape asked: {format_by_shape(errors['two_shape_by_shape'])}"
    return text


def format_extra_objects(extra: dict[str, dict[str, float]]) -> str:
    """`mmgen.eval.scoring.extra_objects` of each prompt set, on one line."""
    parts = [f"{name}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()) for name, shares in extra.items()]
    return "images with extra objects: " + "; ".join(parts)
