"""The model card's rows for the generator read from the other side (docs/captioning.md), where its folder holds
them: image -> text on held-out scenes (`mmgen eval-caption`, eval_caption.json) and where each word's attention
lands (`mmgen eval-attention`, eval_attention.json)."""

from __future__ import annotations

import json
from pathlib import Path

KINDS = (("single", "one object"), ("two", "two objects"))


def inside_rows(out: Path) -> list[str]:
    """Table rows (the card's evaluation table: set, figure, value, target, met) from the folder's results."""
    from .eval.eval_caption import TARGETS
    from .model_card_generator import row as _row

    rows = []
    path = out / "eval_caption.json"
    if path.is_file():
        ev = json.loads(path.read_text())
        for name, label in KINDS:
            ranking, captioning = ev["ranking"][name], ev["captioning"][name]
            for k, (what, value, goal) in enumerate(
                (
                    ("the truth ranked first of 8 captions", ranking["top1"], TARGETS.get((name, "top1"))),
                    ("its own caption (`caption()`): every attribute", captioning["all"], TARGETS.get((name, "all"))),
                )
            ):
                rows.append(
                    _row(
                        f"image → text: {label} ({ranking['n']} / {captioning['n']} scenes)" if k == 0 else "",
                        what,
                        f"{value:.1%}",
                        "" if goal is None else f">= {goal:.0%}",
                        None if goal is None else value >= goal,
                    )
                )
    path = out / "eval_attention.json"
    if path.is_file():
        ev = json.loads(path.read_text())
        peaks = ev["peak_on_object"]
        rows.append(
            _row(
                f"word attention: its map peaks on the object ({ev['n']} prompts)",
                "colour / shape / size word",
                f"{peaks['color']:.1%} / {peaks['shape']:.1%} / {peaks['size']:.1%}",
                f"chance {ev['chance']:.1%}",
            )
        )
    return rows
