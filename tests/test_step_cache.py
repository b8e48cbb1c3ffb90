"""The first-block cache (mmgen/step_cache.py): a step like the last skips the later blocks, any other runs them all,
and nothing outside a sampling run ever sees a run's cache."""

import json
import math

import pytest
import torch

from mmgen.cli import main
from mmgen.models.dit import DIT_PRESETS, DiT
from mmgen.step_cache import FirstBlockCache, check_threshold


@pytest.fixture
def dit():
    """A tiny DiT whose every block does something (adaLN-Zero would leave each one the identity at init)."""
    torch.manual_seed(0)
    model = DiT(sample_size=8, in_channels=4, text_dim=32, **DIT_PRESETS["tiny"] | {"depth": 3}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.2)
    return model


def inputs(dit, rows=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, 8, 8, generator=g)
    return x, dit.prepare_text(torch.randn(rows, 5, 32, generator=g))


@torch.no_grad()
def test_a_step_like_the_last_skips_the_later_blocks(dit):
    x, context = inputs(dit)
    full = dit(x, 500, text_context=context).sample
    cache = FirstBlockCache(0.05, images=2)
    first = dit(x, 500, text_context=context, step_cache=cache).sample  # nothing cached yet: runs in full
    again = dit(x, 500, text_context=context, step_cache=cache).sample  # the same question: skipped
    assert (cache.computed, cache.skipped) == (2, 2)  # images, summed over the two steps
    torch.testing.assert_close(first, full, rtol=0, atol=0)
    torch.testing.assert_close(again, full)


@torch.no_grad()
def test_a_skipped_step_reuses_the_last_residual_and_a_changed_one_runs_in_full(dit):
    x, context = inputs(dit)
    cache = FirstBlockCache(0.2, images=2)
    dit(x, 500, text_context=context, step_cache=cache)
    nearby = x + 0.01 * torch.randn_like(x)
    skipped = dit(nearby, 500, text_context=context, step_cache=cache).sample
    exact = dit(nearby, 500, text_context=context).sample
    assert cache.skipped == 2
    assert not torch.allclose(skipped, exact, atol=1e-6)  # the later blocks did not run ...
    assert (skipped - exact).abs().mean() < 0.05 * exact.abs().mean()  # ... and what they added barely moved
    far = torch.randn_like(x) * 3
    out = dit(far, 900, text_context=context, step_cache=cache).sample
    assert (cache.computed, cache.skipped) == (4, 2)
    torch.testing.assert_close(out, dit(far, 900, text_context=context).sample, rtol=0, atol=0)


@torch.no_grad()
def test_guided_and_unguided_steps_are_cached_apart(dit):
    """A guided step runs an image twice (both guidance halves), an unguided one once: never one's residual for
    the other."""
    x, context = inputs(dit, rows=2)  # one image's two guidance halves
    cache = FirstBlockCache(0.5, images=1)
    dit(x, 500, text_context=context, step_cache=cache)
    dit(x[1:], 500, text_context=context.rows(slice(1, None)), step_cache=cache)
    assert (cache.computed, cache.skipped) == (2, 0)
    with pytest.raises(ValueError, match="3 rows"):
        FirstBlockCache(0.5, images=2).rows_to_run(torch.zeros(3, 16, 32))


@torch.no_grad()
def test_each_image_decides_for_itself(dit):
    """Of a guided batch of two images (rows 0, 1 unconditional, 2, 3 conditional), the one whose input changed
    runs every block on both its rows; the other reuses, as it would in a batch of its own."""
    x, context = inputs(dit, rows=4)
    cache = FirstBlockCache(0.2, images=2)
    dit(x, 500, text_context=context, step_cache=cache)
    moved = x.clone()
    moved[[1, 3]] = torch.randn_like(x[:2]) * 3  # image 1, both halves
    out = dit(moved, 500, text_context=context, step_cache=cache).sample
    assert (cache.computed, cache.skipped) == (3, 1)
    alone = dit(moved[[1, 3]], 500, text_context=context.rows(torch.tensor([1, 3]))).sample
    torch.testing.assert_close(out[[1, 3]], alone)
    torch.testing.assert_close(out[[0, 2]], dit(x, 500, text_context=context).sample[[0, 2]])


@pytest.mark.parametrize("bad", [1, 1.5, -0.1, math.nan, True, "0.2", None])
def test_a_threshold_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="0 \\(off\\) or between 0 and 1"):
        FirstBlockCache(bad, images=1)


def test_zero_is_off_and_a_fraction_is_a_threshold():
    assert check_threshold(0) == 0.0 and check_threshold(0.2) == 0.2


def randomise_blocks(pipe):
    with torch.no_grad():
        for p in pipe.transformer.blocks.parameters():
            p.normal_(std=0.1)


def latents(pipe, **kwargs):
    out = pipe("a red circle", num_inference_steps=12, num_candidates=1, output_type="latent", **kwargs)
    return out.images


def test_a_pipeline_run_with_the_cache(tiny_pipe):
    randomise_blocks(tiny_pipe)
    seed = dict(generator=torch.Generator().manual_seed(3))
    plain = latents(tiny_pipe, **seed)
    # never close enough to skip: every step exactly as without the cache
    assert torch.equal(latents(tiny_pipe, generator=torch.Generator().manual_seed(3), first_block_cache=1e-9), plain)

    cached = latents(tiny_pipe, generator=torch.Generator().manual_seed(3), first_block_cache=0.9)
    run = tiny_pipe.stepwise(
        "a red circle", 12, generator=torch.Generator().manual_seed(3), num_candidates=1, first_block_cache=0.9
    )
    while not run.done:
        run.step()
    assert run.step_cache.skipped > 0 and run.step_cache.computed + run.step_cache.skipped == 12
    assert not torch.equal(cached, plain)
    pair = tiny_pipe(  # an image does not depend on the rest of its batch
        ["a red circle", "a blue square"],
        num_inference_steps=12,
        num_candidates=1,
        first_block_cache=0.9,
        output_type="latent",
        generator=[torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)],
    ).images
    torch.testing.assert_close(pair[:1], cached)
    assert torch.equal(run.result("latent").images, cached)  # a run stepped by hand lands where the call does

    assert tiny_pipe.stepwise("a red circle", 12, num_candidates=1, first_block_cache=0).step_cache is None
    assert torch.equal(latents(tiny_pipe, generator=torch.Generator().manual_seed(3), first_block_cache=0), plain)
    for bad in (1, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="0 \\(off\\) or between 0 and 1"):
            latents(tiny_pipe, first_block_cache=bad)


def test_a_model_can_turn_the_cache_on_for_itself(tiny_pipe):
    """A model's sampling_defaults may set the threshold (e.g. 0.1); a call's 0 turns it off."""
    randomise_blocks(tiny_pipe)
    tiny_pipe.register_to_config(sampling_defaults={"first_block_cache": 0.9})
    assert tiny_pipe.sampling_defaults["first_block_cache"] == 0.9
    assert tiny_pipe.with_scheduler("ddim").sampling_defaults["first_block_cache"] == 0.9  # the app's runs keep it
    run = tiny_pipe.stepwise("a red circle", 12, generator=torch.Generator().manual_seed(3), num_candidates=2)
    assert run.guidance.first_block_cache == 0.9 and run.step_cache is not None
    model_default = latents(tiny_pipe, generator=torch.Generator().manual_seed(3))
    asked = latents(tiny_pipe, generator=torch.Generator().manual_seed(3), first_block_cache=0.9)
    assert torch.equal(model_default, asked)
    off = latents(tiny_pipe, generator=torch.Generator().manual_seed(3), first_block_cache=0)
    assert not torch.equal(off, model_default)
    with pytest.raises(ValueError, match="sampling_defaults"):
        type(tiny_pipe)(**tiny_pipe.components, sampling_defaults={"first_block_cache": 2})


@pytest.mark.parametrize("value, message", [("1.5", "between 0 and 1"), ("fast", "such as 0.2")])
def test_the_command_line_refuses_a_bad_threshold(value, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "a red circle", "--first-block-cache", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


@pytest.fixture
def caches(monkeypatch):
    """The step cache of every sampling run started while the test runs (None: a run without one)."""
    from mmgen.denoising import DenoisingRun

    seen, init = [], DenoisingRun.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen.append(self.step_cache)

    monkeypatch.setattr(DenoisingRun, "__init__", spy)
    return seen


def test_the_command_line_samples_with_the_cache(tiny_pipe, tmp_path, caches):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "x.png"
    argv = ["generate", "a red circle", "--model", str(tmp_path / "pipe"), "--out", str(out), "--steps", "3"]
    assert main(argv + ["--first-block-cache", "0.2"]) == 0 and out.exists()
    assert caches and all(c is not None and c.threshold == 0.2 for c in caches)  # the candidates' runs too
    caches.clear()
    assert main(argv) == 0 and caches and all(c is None for c in caches)


def test_the_evaluation_samples_with_the_cache_it_records(tiny_pipe, tmp_path, caches):
    """`eval-generator --first-block-cache T`: every run has the cache, the results and the card say so."""
    from mmgen.model_card import evaluation_section

    tiny_pipe.save_pretrained(tmp_path / "pipe")
    argv = ["eval-generator", "--model", str(tmp_path / "pipe"), "--steps", "4", "--first-block-cache", "0.3"]
    out = tmp_path / "pipe" / "eval_generator.json"
    assert main(argv + ["--n-single", "1", "--n-two", "1", "--n-reworded", "1", "--out", str(out)]) == 0
    assert caches and all(c is not None and c.threshold == 0.3 for c in caches)
    assert json.loads(out.read_text())["settings"]["first_block_cache"] == 0.3
    assert "first-block cache 0.3." in evaluation_section(tmp_path / "pipe")
    sweep = tmp_path / "sweep.json"
    caches.clear()
    tuning = ["--sweep", "--sweep-schedulers", "ddim", "--sweep-guidance", "2", "--sweep-codebook-snap", "0"]
    assert main(argv + tuning + ["--sweep-n-single", "1", "--sweep-n-two", "1", "--out", str(sweep)]) == 0
    assert caches and all(c is not None and c.threshold == 0.3 for c in caches)
    assert json.loads(sweep.read_text())["first_block_cache"] == 0.3


def test_the_apps_run_says_what_the_cache_skipped_and_its_card_records_it(tiny_pipe):
    from types import SimpleNamespace

    from mmgen.app.frames import Trajectory
    from mmgen.app.runs import finish_run
    from mmgen.settings import SamplingSettings

    randomise_blocks(tiny_pipe)
    settings = SamplingSettings("a red circle", 12, 4.0, num_candidates=1, first_block_cache=0.9).checked()
    run = tiny_pipe.stepwise(**settings.pipeline_kwargs(), generator=settings.generator())
    while not run.done:
        run.step()
    ctx = SimpleNamespace(
        compute=lambda fn, *a, **k: fn(*a, **k),
        model_name="tiny",
        num_codes=tiny_pipe.vqvae.config.num_codes,
        scheduler_label=lambda: "ddim",
    )
    finished, info = finish_run(ctx, run, Trajectory(settings.prompt), settings, 0.1)
    assert f", {run.step_cache.skipped} of 12 steps from the first-block cache" in info and run.step_cache.skipped
    assert finished.card["first_block_cache"] == 0.9
