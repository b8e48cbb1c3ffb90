"""Run cards: a small JSON file that records everything a generated image depends on, so it can be made again.

    card = make_run_card(settings, model="mmgen-base", scheduler_config=scheduler_config_of(run.scheduler))
    loaded = read_run_card(json.loads(path.read_text()), model="mmgen-base")
    loaded.settings, loaded.notes          # the SamplingSettings to rerun, and what may make the image differ

The format is versioned (`RUN_CARD_FORMAT`). Cards written before a setting existed load with the value the run
had then: no codebook snap (0), one starting noise, guidance at every step, no first-block cache. Every value goes
through the same check as any other entry point (`SamplingSettings.checked`), so a hand-edited card gets the same
messages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .settings import SamplingSettings, scheduler_short_name

RUN_CARD_FORMAT = "mmgen-run-v1"
# What a card from before each setting existed was made with.
LEGACY_DEFAULTS = {
    "codebook_snap": 0.0,
    "num_candidates": 1,
    "guidance_interval": None,
    "scheduler": None,
    "first_block_cache": 0.0,
}
NULLABLE = ("guidance_interval", "scheduler")  # None: guidance at every step; the model's own scheduler
# every field a card holds (others are named in a note: a misspelt one would be ignored unseen)
FIELDS = frozenset(
    "format model prompt negative_prompt seed steps guidance_scale scheduler codebook_snap num_candidates "
    "guidance_interval first_block_cache matmuls scheduler_config".split()
)


def _plain(value):
    """JSON as every parser reads it: a non-finite float (a scheduler's -inf clip) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def scheduler_config_of(scheduler) -> dict:
    """A diffusers scheduler's config with its class name, as a card records it (`.config` leaves the name out)."""
    return {"_class_name": type(scheduler).__name__, **scheduler.config}


def make_run_card(
    settings: SamplingSettings, model: str, scheduler_config: dict | None = None, matmuls: str = "float32"
) -> dict:
    """The card of a run made with `settings` by `model` (a name or path), as a JSON-ready dict. `matmuls`: the
    DiT's matmul dtype ("bf16" under `pipe.set_autocast(torch.bfloat16)`): a few token cells differ across it."""
    interval = settings.guidance_interval
    return {
        "format": RUN_CARD_FORMAT,
        "model": model,
        "prompt": settings.prompt,
        "negative_prompt": "",
        "seed": settings.seed,
        "steps": settings.num_inference_steps,
        "guidance_scale": settings.guidance_scale,
        "scheduler": settings.scheduler,
        "codebook_snap": settings.codebook_snap,
        "num_candidates": settings.num_candidates,
        "guidance_interval": None if interval is None else list(interval),
        "first_block_cache": settings.first_block_cache,
        "matmuls": matmuls,
        "scheduler_config": _plain(dict(scheduler_config or {})),
    }


@dataclass
class LoadedRunCard:
    settings: SamplingSettings  # checked: ready to run
    notes: list[str] = field(default_factory=list)  # why the image may differ here (another model, ...)
    model: str | None = None  # the model the card names (a shipped name, a folder or a Hub id)
    matmuls: str | None = None  # the DiT's matmul dtype it was made with ("float32", "bf16"); None: not recorded


def _field(card: dict, key: str, cast):
    try:
        value = card[key] if key not in LEGACY_DEFAULTS else card.get(key, LEGACY_DEFAULTS[key])
        return None if value is None and key in NULLABLE else cast(value)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"The run card lacks a valid field: {key} ({e})") from e


def _text(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{str(value)[:40]!r} is not text")
    return value


def _whole(value) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ValueError(f"{str(value)[:40]} is not a whole number")
    return int(value)


def _interval(value) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{value!r} is not a [low, high] pair")
    return float(value[0]), float(value[1])


def read_run_card(
    card,
    model: str | None = None,
    app_interval: tuple[float, float] | None = None,
    app_cache: float | None = None,
    check: Callable[[SamplingSettings], SamplingSettings] = SamplingSettings.checked,
    matmuls: str | None = None,
) -> LoadedRunCard:
    """A card (a dict, or the path of a JSON file) -> the settings to rerun it, checked, and notes for people.
    ValueError with a message for people when it is not a run card or a field is missing or bad. `model`: the
    model that will run it (a note says so when the card names another); `app_interval`: the guidance interval
    the caller will run with (a note when the card's differs), `app_cache` its first-block cache (the same),
    `matmuls` its DiT's matmul dtype ("float32", "bf16"; the same). `check`: how the settings are checked (by
    default the library's bounds; an app passes its own limits'). A card without a scheduler name runs the one
    its `scheduler_config` names."""
    if isinstance(card, str | Path):
        try:
            text = Path(card).read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad's) is no problem
        except UnicodeDecodeError:
            raise ValueError("Not a run card: the file is not text (a run card is a .json file).") from None
        except OSError as e:
            raise ValueError(f"The run card could not be read: {e.strerror or e}.") from None
        if not text.strip():
            raise ValueError("Not a run card: the file is empty.")
        try:
            card = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"Not a run card: the file is not JSON (line {e.lineno}, column {e.colno}).") from None
        except (ValueError, RecursionError):  # a number of thousands of digits; arrays nested thousands deep
            raise ValueError(
                "Not a run card: the file holds JSON no run card has (huge numbers or deep nesting)."
            ) from None
    if not isinstance(card, dict) or card.get("format") != RUN_CARD_FORMAT:
        raise ValueError(f"Not an mmgen run card (expected format {RUN_CARD_FORMAT!r}).")
    settings = SamplingSettings(
        prompt=_field(card, "prompt", _text),
        num_inference_steps=_field(card, "steps", _whole),
        guidance_scale=_field(card, "guidance_scale", float),
        guidance_interval=_field(card, "guidance_interval", _interval),
        codebook_snap=_field(card, "codebook_snap", float),
        num_candidates=_field(card, "num_candidates", _whole),
        seed=_field(card, "seed", _whole),
        scheduler=_field(card, "scheduler", _text) or _scheduler_named(card.get("scheduler_config")),
        first_block_cache=_field(card, "first_block_cache", float),
    )
    settings = check(settings)
    notes = []
    if model is not None and card.get("model") != model:
        notes.append(f"made with model {card.get('model')!r}, this is {model!r}")
    if app_interval is not None and settings.guidance_interval != app_interval:
        notes.append("made with another guidance interval than this app's, so the image may differ")
    if app_cache is not None and settings.first_block_cache != app_cache:
        notes.append("made with another first-block cache than this app's, so the image may differ")
    made = card.get("matmuls")  # None: a card from before it was recorded, made either way
    if matmuls is not None and made is not None and made != matmuls:
        notes.append(f"made with the DiT's matmuls in {made}, these run in {matmuls}: a few token cells may differ")
    if card.get("negative_prompt"):
        notes.append("its negative prompt is not applied: runs from cards use the empty one")
    if unknown := sorted(set(card) - FIELDS):
        notes.append(f"fields no run card has were ignored: {', '.join(map(str, unknown))}")
    named = card.get("model")
    named = named.strip() if isinstance(named, str) and named.strip() else None
    return LoadedRunCard(settings, notes, named, made if made in ("float32", "bf16") else None)


def _scheduler_named(config) -> str | None:
    """The short name of the scheduler class a card's `scheduler_config` names (None: none, or not one of ours)."""
    return scheduler_short_name(config.get("_class_name")) if isinstance(config, dict) else None
