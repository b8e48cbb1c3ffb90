"""Run cards: written from settings, read back into the same settings; old and hand-edited cards."""

import json

import pytest

from mmgen.run_card import RUN_CARD_FORMAT, make_run_card, read_run_card
from mmgen.settings import DEFAULT_GUIDANCE_INTERVAL, SamplingSettings

SETTINGS = SamplingSettings("a blue star", 3, 3.0, DEFAULT_GUIDANCE_INTERVAL, 0.25, 3, 11, "euler-ancestral", 0.2)


def test_a_card_round_trips_through_json(tmp_path):
    card = make_run_card(SETTINGS, model="tiny", scheduler_config={"beta_schedule": "squaredcos_cap_v2"})
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    loaded = read_run_card(str(path), model="tiny", app_interval=DEFAULT_GUIDANCE_INTERVAL, app_cache=0.2)
    assert loaded.settings == SETTINGS and loaded.notes == []
    assert card["format"] == RUN_CARD_FORMAT and card["guidance_interval"] == list(DEFAULT_GUIDANCE_INTERVAL)
    assert card["first_block_cache"] == 0.2


def test_an_old_card_loads_with_what_its_run_had():
    card = make_run_card(SETTINGS, model="other")
    for key in ("codebook_snap", "num_candidates", "guidance_interval", "first_block_cache"):
        del card[key]
    loaded = read_run_card(card, model="tiny", app_interval=DEFAULT_GUIDANCE_INTERVAL, app_cache=0.2)
    assert (loaded.settings.codebook_snap, loaded.settings.num_candidates) == (0.0, 1)
    assert loaded.settings.guidance_interval is None and loaded.settings.first_block_cache == 0.0
    assert any("'other'" in n for n in loaded.notes) and any("guidance interval" in n for n in loaded.notes)
    assert any("first-block cache" in n for n in loaded.notes)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "something-else"}, "Not an mmgen run card"),
        ({"codebook_snap": "lots"}, "codebook_snap"),
        ({"guidance_interval": 250}, "guidance_interval"),
        ({"num_candidates": 2.5}, "num_candidates"),
        ({"num_candidates": True}, "num_candidates"),
        ({"steps": None}, "steps"),
        ({"guidance_scale": float("nan")}, "Guidance"),
        ({"prompt": "x" * 5000}, "too long"),
        ({"scheduler": "bogus"}, "Unknown scheduler"),
        ({"first_block_cache": 1.5}, "first-block cache threshold"),
        ({"first_block_cache": "fast"}, "first_block_cache"),
        ({"steps": float("inf")}, "steps"),
        ({"seed": float("-inf")}, "seed"),
        ({"guidance_scale": 10**400}, "guidance_scale"),
        ({"prompt": ["a red circle"]}, "prompt"),
        ({"scheduler": ["ddim"]}, "scheduler"),
    ],
)
def test_a_bad_card_gets_a_message(change, message):
    with pytest.raises(ValueError, match=message):
        read_run_card({**make_run_card(SETTINGS, model="tiny"), **change})


def test_a_missing_field_and_a_broken_file_get_messages(tmp_path):
    card = make_run_card(SETTINGS, model="tiny")
    del card["prompt"]
    with pytest.raises(ValueError, match="lacks a valid field: prompt"):
        read_run_card(card)
    # each in words, never the parser's own ("Expecting value: line 1 column 1 (char 0)", "'utf-8' codec ...")
    for content, message in (
        (b"{not json", r"Not a run card: the file is not JSON \(line 1, column 2\)\.$"),
        (b"", "Not a run card: the file is empty."),
        (b"\xff\xfe\x00binary", r"Not a run card: the file is not text"),
    ):
        (tmp_path / "bad.json").write_bytes(content)
        with pytest.raises(ValueError, match=message):
            read_run_card(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="could not be read"):
        read_run_card(tmp_path / "missing.json")
    for content in (b"[" * 20000, b'{"steps": ' + b"9" * 5000 + b"}"):  # RecursionError; int-digits ValueError
        (tmp_path / "bad.json").write_bytes(content)
        with pytest.raises(ValueError, match="Not a run card: the file holds JSON no run card has"):
            read_run_card(tmp_path / "bad.json")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(make_run_card(SETTINGS, model="tiny")).encode())
    assert read_run_card(tmp_path / "bom.json").settings.prompt == SETTINGS.prompt  # as Notepad saves it


def test_a_card_within_the_library_bounds_can_exceed_an_apps():
    card = make_run_card(SamplingSettings("a red circle", num_inference_steps=500), model="tiny")
    assert read_run_card(card).settings.num_inference_steps == 500
    with pytest.raises(ValueError, match=r"1\.\.100"):
        read_run_card(card, check=lambda s: s.checked(max_steps=100))
    from mmgen.app.limits import Limits  # an app's check: its limits, named

    with pytest.raises(ValueError, match=r"over this Space's limit of 100 \(MMGEN_MAX_STEPS\)"):
        read_run_card({**card, "steps": 5000}, check=Limits().check_sampling)


def test_what_would_change_a_cards_image_is_recorded_or_said():
    """A review: cards from a bf16 app differed from float32 reruns by 6 to 9 of 256 cells, unsaid; a card without
    a scheduler name ran the model's own, not the one its config named (156 cells); a misspelt field or a negative
    prompt was ignored unseen; the scheduler config's -Infinity made the card JSON only Python reads."""
    settings = SamplingSettings(prompt="a red circle", seed=3, scheduler=None)
    config = {"_class_name": "DDIMScheduler", "lambda_min_clipped": float("-inf")}
    card = make_run_card(settings, "m", config, matmuls="bf16")
    text = json.dumps(card, allow_nan=False)  # standard JSON
    assert card["matmuls"] == "bf16" and '"lambda_min_clipped": null' in text
    loaded = read_run_card(json.loads(text), matmuls="float32")
    assert loaded.settings.scheduler == "ddim"
    assert loaded.notes == ["made with the DiT's matmuls in bf16, these run in float32: a few token cells may differ"]
    assert read_run_card(card, matmuls="bf16").notes == []
    edited = card | {"codebook-snap": 0.7, "negative_prompt": "blurry"}
    assert read_run_card(edited).notes == [
        "its negative prompt is not applied: runs from cards use the empty one",
        "fields no run card has were ignored: codebook-snap",
    ]
