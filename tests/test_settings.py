"""The one check that every entry point (pipeline, CLI, app, run cards) calls."""

import math

import pytest

from mmgen.settings import MAX_SEED, SamplingSettings, check_sampling


def test_checked_normalises_types():
    s = SamplingSettings("  a red circle ", 20.0, 3, [100, 900], 1, 2.0, 7.0, "ddim").checked()
    assert s == SamplingSettings("a red circle", 20, 3.0, (100.0, 900.0), 1.0, 2, 7, "ddim")
    assert isinstance(s.num_inference_steps, int) and isinstance(s.guidance_scale, float)
    assert s.pipeline_kwargs()["guidance_interval"] == (100.0, 900.0)
    assert s.generator().initial_seed() == 7


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(prompt="   "), "Type a prompt"),
        (dict(prompt="x" * 2001), "too long"),
        (dict(num_inference_steps=0), r"Steps must be a whole number in 1\.\.1000"),
        (dict(num_inference_steps=2.5), "Steps"),
        (dict(num_inference_steps=True), "Steps"),
        (dict(guidance_scale=math.nan), "Guidance"),
        (dict(guidance_scale=math.inf), "Guidance"),
        (dict(guidance_scale=-1), "Guidance"),
        (dict(guidance_scale="4"), "Guidance"),
        (dict(guidance_interval=(600, 200)), "low <= high"),
        (dict(guidance_interval=250), "guidance interval"),
        (dict(guidance_interval=(0, math.nan)), "guidance interval"),
        (dict(codebook_snap=1.5), "Codebook snap"),
        (dict(codebook_snap=math.nan), "Codebook snap"),
        (dict(num_candidates=17), r"Candidates must be a whole number in 1\.\.16"),
        (dict(seed=-1), "seed"),
        (dict(seed=MAX_SEED + 1), "seed"),
        (dict(scheduler="bogus"), "Unknown scheduler"),
    ],
)
def test_every_bad_value_gets_a_message(change, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**{"prompt": "a red circle", **change}).checked()


def test_an_entry_point_may_tighten_the_bounds():
    assert check_sampling(100, 4.0, None, 0.5, 8, max_steps=100, max_candidates=8)[0] == 100
    with pytest.raises(ValueError, match=r"1\.\.100"):
        SamplingSettings("a red circle", num_inference_steps=101).checked(max_steps=100)
    with pytest.raises(ValueError, match=r"1\.\.8"):
        SamplingSettings("a red circle", num_candidates=9).checked(max_candidates=8)
