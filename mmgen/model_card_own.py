"""The model card's rows for a model of one's own images (docs/own-data.md, "Measuring your own model"): its
tokenizer on a held-out folder (`mmgen eval-tokenizer --folder`, eval_tokenizer.json) and its prompt fidelity by
retrieval (`mmgen eval-retrieval`, eval_retrieval.json)."""

from __future__ import annotations

import json
from pathlib import Path


def folder_rows(ev: dict) -> list[str]:
    """`mmgen eval-tokenizer --folder`'s figures: the reconstruction of the folder's images and the codes used."""
    from .model_card_generator import row as _row

    f = ev["folder"]
    where = f"tokenizer: {f['n_images']} images of `{f['path']}`"
    return [
        _row(where, "PSNR / SSIM", f"{f['psnr']:.2f} dB / {f['ssim']:.3f}"),
        _row(where, "codes used / perplexity", f"{f['usage']:.1%} / {f['perplexity']:.0f}"),
    ]


def retrieval_rows(out: Path) -> list[str]:
    """Each query folder's top-1 / top-5 among the gallery's images, beside chance (eval_retrieval.json)."""
    from .model_card_generator import row as _row

    path = out / "eval_retrieval.json"
    ev = json.loads(path.read_text()) if path.is_file() else {}
    if ev.get("half") != "test":  # a --tune sweep: tuning data, not a result
        return []
    chance = f"chance {ev['chance']['top1']:.1%} / {ev['chance']['top5']:.1%}"
    own = ev.get("checks", {}).get("own_images", {}).get("pixels", {}).get("top1", 1.0)
    check = "the evaluator's check: the targets' own images"  # each nearest itself (a copy fails it)
    failed = [_row(check, "top-1 (pixels)", f"{own:.0%}", "100 %", False)] if own < 1 else []
    return failed + [
        _row(
            f"generator: {found['n']} prompts of `{name}`, retrieved among {ev['gallery']:,} images",
            "top-1 / top-5 (pixels)",
            f"{found['pixels']['top1']:.1%} / {found['pixels']['top5']:.1%}",
            chance,
        )
        for name, found in ev.items()
        if isinstance(found, dict) and "pixels" in found and "n" in found
    ]
