"""The model card's rows for a generator's held-out evaluation (eval_generator.json): each prompt set's figures
against the targets `mmgen eval-generator` checks, the strict judge's against its own, the tokenizer ceiling."""

from __future__ import annotations


def row(component: str, what: str, value: str, target: str = "", met: bool | None = None) -> str:
    """One row of a card's evaluation table (every part's: tokenizer, generator, inside views)."""
    mark = "" if met is None else ("yes" if met else "**no**")
    return f"| {component} | {what} | {value} | {target} | {mark} |"


# (prompt set in eval_generator.json, its label, the metrics shown): one row per metric
GENERATOR_ROWS = [
    ("single", "single object, every attribute named", ("color", "shape", "size", "position", "background", "all")),
    ("paraphrased", "the same facts, reworded", ("position", "all")),
    ("paraphrased_known_words", "the reworded prompts in its training words (`--known-words`)", ("position", "all")),
    ("two", "two objects and a relation", ("relation", "count", "shapes", "all")),
]
METRIC_NAMES = {
    "color": "colour",
    "all": "all at once",
    "count": "exactly two objects",
    "shapes": "both shapes",
}


def strict_rows(strict: dict) -> list[str]:
    """The same images read by the judge that can answer "no shape" and agrees with people (docs/judge.md), against
    its targets: every attribute right, and the reworded prompts' gap to the same facts worded as in training."""
    from .eval.report import MAX_REWORDED_GAP, STRICT_TARGETS, reworded_gap

    rows = []
    named = (("single", "single object"), ("paraphrased", "reworded"), ("two", "two objects"))
    for name, label in named:
        if name in strict:
            value, goal = strict[name]["all"], STRICT_TARGETS.get(name)
            target = "" if goal is None else f">= {goal:.0%}"
            first = "generator, read by the strict judge (the one that agrees with people)" if not rows else ""
            rows.append(
                row(first, f"{label}: all right", f"{value:.1%}", target, None if goal is None else value >= goal)
            )
    gap = reworded_gap(strict)
    if gap is not None:
        rows.append(
            row(
                "",
                "reworded: points under the same facts as trained",
                f"{100 * gap:.1f}",
                f"<= {100 * MAX_REWORDED_GAP:.0f}",
                gap <= MAX_REWORDED_GAP,
            )
        )
    return rows


def generator_rows(ev: dict) -> list[str]:
    """The generator's held-out figures against the targets `mmgen eval-generator` checks."""
    from .eval.report import TARGETS

    rows = []
    for name, label, metrics in GENERATOR_ROWS:
        if name not in ev:
            continue
        for k, metric in enumerate(metrics):
            value, goal = ev[name][metric], TARGETS.get((name, metric))
            rows.append(
                row(
                    f"generator: {label} ({ev[name]['n']} prompts)" if k == 0 else "",
                    METRIC_NAMES.get(metric, metric),
                    f"{value:.1%}",
                    "" if goal is None else f">= {goal:.0%}",
                    None if goal is None else value >= goal,
                )
            )
    if "free" in ev:
        goal = TARGETS.get(("free", "min"), 5)
        fewest = ev["free"]["min"]
        rows.append(
            row(
                "generator: free prompts (16 seeds each)",
                "variety: fewest distinct grid cells the object lands in",
                str(fewest),
                f">= {goal}",
                fewest >= goal,
            )
        )
    rows += strict_rows(ev.get("strict_judge", {}))
    ceiling = ev.get("tokenizer_ceiling", {}).get("two", {})
    if "tokenized" in ceiling:  # what a perfect generator would score: real scenes after the tokenizer's round trip
        rows.append(
            row(
                "tokenizer ceiling: real two-object scenes, tokenized",
                "all at once",
                f"{ceiling['tokenized']['all']:.1%}",
            )
        )
    if "tokenized_strict" in ceiling:
        rows.append(row("", "the same, read by the strict judge", f"{ceiling['tokenized_strict']['all']:.1%}"))
    return rows
