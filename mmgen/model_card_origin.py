"""Where a model card says a model's weights came from: trained from scratch, or fine-tuned from another model
(a Hub id for the card's `base_model`), as its training logs say; and how a card names a model or a data folder
(no machine's paths in a published card)."""

from __future__ import annotations

from pathlib import Path


def fine_tuned_from(out: Path) -> list[str]:
    """The models the weights were fine-tuned from, as their stages name them: where a part's first logged stage
    started from another model (its log holds no earlier stage), or where a stage started from one on other data
    than the stage before (a fine-tuned model's log carries the stages of the model it started from)."""
    from .model_card import _training_args

    starts = []
    for log in ("vqvae_train_log.jsonl", "generator_train_log.jsonl"):
        stages = _training_args(out, log)
        for k, args in enumerate(stages):
            other_data = k > 0 and args.get("data", "shapes") != stages[k - 1].get("data", "shapes")
            if args.get("init_from") and (k == 0 or other_data):
                starts.append(shown_name(args["init_from"]))
    return list(dict.fromkeys(starts))


def shown_name(model: str) -> str:
    """A model (or a data folder) as a card names it: as given (a Hub id, a relative folder), but an absolute path
    (no machine's paths in a published card) from this repository's root, or else by its name."""
    from .model_paths import ROOT

    path = Path(model)
    if not path.is_absolute():
        return model
    return path.resolve().relative_to(ROOT).as_posix() if ROOT in path.resolve().parents else path.name


def on_the_hub(model: str) -> bool:
    """Whether a model as a stage named it is a Hub repo id: owner/name, and no shipped model or folder here."""
    from .model_paths import HUB_ID, mistyped_path, shipped_folder

    local = shipped_folder(model) or Path(model).exists() or mistyped_path(model)
    return bool(HUB_ID.match(model)) and not local


def origin(out: Path) -> str:
    """How the card says the weights began: trained from scratch, or fine-tuned from `X`."""
    starts = fine_tuned_from(out)
    return "fine-tuned from " + " and ".join(f"`{s}`" for s in starts) if starts else "trained from scratch"
