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
        (dict(first_block_cache=1), "first-block cache threshold must be 0 \\(off\\) or between 0 and 1"),
        (dict(first_block_cache="0.2"), "first-block cache threshold"),
        (dict(first_block_cache=None), "first-block cache threshold"),
    ],
)
def test_every_bad_value_gets_a_message(change, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**{"prompt": "a red circle", **change}).checked()


def test_an_entry_point_may_tighten_the_bounds():
    assert check_sampling(100, 4.0, None, 0.5, 8, max_steps=100, max_candidates=8).num_inference_steps == 100
    with pytest.raises(ValueError, match=r"1\.\.100"):
        SamplingSettings("a red circle", num_inference_steps=101).checked(max_steps=100)
    with pytest.raises(ValueError, match=r"1\.\.8"):
        SamplingSettings("a red circle", num_candidates=9).checked(max_candidates=8)


def test_a_model_sets_its_own_defaults_and_a_given_value_wins():
    from mmgen.settings import DEFAULT_CODEBOOK_SNAP, DEFAULT_STEPS, model_sampling_defaults

    library = model_sampling_defaults()
    assert library["num_inference_steps"] == DEFAULT_STEPS and library["codebook_snap"] == DEFAULT_CODEBOOK_SNAP
    own = model_sampling_defaults({"num_inference_steps": 30, "guidance_scale": 7})
    assert own == library | {"num_inference_steps": 30, "guidance_scale": 7.0}
    # settings given (not None) win over the model's; a guidance interval of None still means "every step"
    s = SamplingSettings.of_model(
        own, "a red circle", num_inference_steps=None, guidance_scale=2, guidance_interval=None
    )
    assert (s.num_inference_steps, s.guidance_scale, s.guidance_interval) == (30, 2, None)
    assert s.codebook_snap == DEFAULT_CODEBOOK_SNAP
    cached = model_sampling_defaults({"first_block_cache": 0.1})  # a model's cache, taken unless a call says
    assert SamplingSettings.of_model(cached, "a red circle", first_block_cache=None).first_block_cache == 0.1
    assert SamplingSettings.of_model(cached, "a red circle", first_block_cache=0).first_block_cache == 0


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"steps": 30}, r"can set num_inference_steps, .*not \['steps'\]"),
        ({"guidance_interval": None}, r"not \['guidance_interval'\]"),  # the interval stays the library's
        (30, "must be a table of settings, got 30"),
        ("fast", "must be a table of settings"),
        ([["num_inference_steps", 3]], "must be a table of settings"),
        ({"num_inference_steps": 0}, "Steps"),
        ({"codebook_snap": 2}, "Codebook snap"),
        ({"first_block_cache": 1.5}, "first-block cache threshold"),
        ({"first_block_cache": None}, "first-block cache threshold"),
    ],
)
def test_a_models_bad_defaults_are_refused(entry, message):
    from mmgen.settings import model_sampling_defaults

    with pytest.raises(ValueError, match=message):
        model_sampling_defaults(entry)


def test_multistep_schedulers_are_told_by_their_class_not_a_leftover_config_key():
    """mmgen-base's Euler ancestral config carries `solver_order: 2`: the app's branch note called it multistep."""
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    from mmgen.settings import multistep

    euler = EulerAncestralDiscreteScheduler.from_pretrained("assets/mmgen-base", subfolder="scheduler")
    assert euler.config.get("solver_order") == 2 and not multistep(euler)
    assert multistep(DPMSolverMultistepScheduler.from_config(euler.config))
    assert not multistep(DPMSolverMultistepScheduler.from_config(euler.config, solver_order=1))

    class Mine(DPMSolverMultistepScheduler):  # its own __init__(**kwargs) hid the parent's solver_order
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    assert multistep(Mine.from_config(euler.config))
