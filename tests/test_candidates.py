import pytest
import torch
from diffusers import DDPMScheduler, EulerAncestralDiscreteScheduler

from mmgen.candidates import SCORE_TIMESTEPS, choose_generators, denoising_error, select_steps

PROMPTS = ["a red circle", "a blue square to the left of a green star"]


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture
def pipe(tiny_pipe):
    # an ancestral sampler: its steps draw noise from the generator, so a winner's generator must restart exactly
    tiny_pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(tiny_pipe.scheduler.config)
    return tiny_pipe


def test_select_steps_is_a_share_of_the_run():
    assert [select_steps(n) for n in (1, 2, 10, 30)] == [1, 1, 3, 9]


def test_the_winner_is_the_least_erroneous_candidate_and_restarts_at_its_noise(pipe):
    winners, errors = choose_generators(pipe, PROMPTS, 3, 4, 3.0, generator=_gens(0, 1), codebook_snap=0.5)
    assert errors.shape == (2, 3) and len(winners) == 2
    assert not torch.equal(errors[:, 0], errors[:, 1])  # the candidates differ
    # run each winner alone through the same first steps: it must reproduce the lowest score of its row
    run = pipe.stepwise(PROMPTS, 4, 3.0, generator=winners, codebook_snap=0.5, num_candidates=1)
    for _ in range(select_steps(4)):
        x0 = run.step()["pred_x0"]
    own = denoising_error(pipe, pipe.snap_latents(x0), run.text_context.rows(slice(2, None)))
    torch.testing.assert_close(own, errors.min(dim=1).values, rtol=1e-4, atol=1e-6)


def test_candidates_reproduce_and_stepwise_equals_the_call(pipe):
    a = pipe(PROMPTS, num_inference_steps=4, num_candidates=3, generator=_gens(0, 1))
    b = pipe(PROMPTS, num_inference_steps=4, num_candidates=3, generator=_gens(0, 1))
    assert torch.equal(a.tokens, b.tokens)
    run = pipe.stepwise(PROMPTS, 4, num_candidates=3, generator=_gens(0, 1))
    while not run.done:
        run.step()
    assert torch.equal(run.result().tokens, a.tokens)
    one = pipe(
        PROMPTS[0],
        num_inference_steps=4,
        num_candidates=3,
        num_images_per_prompt=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert one.tokens.shape[0] == 2


def test_one_candidate_is_the_seeds_own_noise(tiny_pipe):
    """num_candidates=1 starts from the generator's first draw (a deterministic sampler: nothing else is drawn);
    the default tries other noises."""
    one = tiny_pipe(PROMPTS[0], num_inference_steps=3, num_candidates=1, generator=torch.Generator().manual_seed(5))
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))  # unit noise, as in diffusers
    assert torch.equal(one.tokens, tiny_pipe(PROMPTS[0], num_inference_steps=3, latents=noise).tokens)
    default = tiny_pipe(PROMPTS[0], num_inference_steps=3, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(one.tokens, default.tokens)


def test_given_latents_fix_the_noise(pipe):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    a = pipe(PROMPTS[0], num_inference_steps=3, latents=latents, generator=torch.Generator().manual_seed(0))
    b = pipe(
        PROMPTS[0],
        num_inference_steps=3,
        latents=latents,
        num_candidates=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(a.tokens, b.tokens)


def test_denoising_error_is_the_summed_v_error(pipe, monkeypatch):
    """With a transformer that predicts zeros, the error is the mean square of the v target at each timestep."""
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    _, ctx = pipe.prepare_text_context(PROMPTS, "cpu", 1, 1.0)

    class Zeros(torch.nn.Module):
        def forward(self, x, t, text_context=None):
            return type("Out", (), {"sample": torch.zeros_like(x)})()

    monkeypatch.setattr(pipe, "transformer", Zeros())
    pipe.scheduler.register_to_config(prediction_type="v_prediction")
    got = denoising_error(pipe, x0, ctx)
    ab = DDPMScheduler.from_config(pipe.scheduler.config).alphas_cumprod
    g = torch.Generator().manual_seed(0)
    want = torch.zeros(2)
    for t in SCORE_TIMESTEPS:
        eps = torch.randn(x0.shape[1:], generator=g)
        want += ((ab[t].sqrt() * eps - (1 - ab[t]).sqrt() * x0) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("n", [0, 17, 2.5])
def test_bad_candidate_counts_are_clear_errors(pipe, n):
    with pytest.raises(ValueError, match="Candidates must be a whole number in 1..16"):
        pipe("a red circle", num_inference_steps=2, num_candidates=n)
    with pytest.raises(ValueError, match="Candidates must be a whole number in 1..16"):
        pipe.stepwise("a red circle", 2, num_candidates=n)


def test_one_generator_per_image(pipe):
    with pytest.raises(ValueError, match="generators for a batch of 2"):
        pipe(PROMPTS, num_inference_steps=2, num_candidates=2, generator=_gens(0))


def test_the_scoring_noise_is_the_training_forward_process():
    """Best-of-N and captioning score x0 by noising it as training did (diffusers' DDPMScheduler.add_noise) and
    comparing with what training asked for (get_velocity for v, the noise for epsilon)."""
    from diffusers import DDPMScheduler

    from mmgen.denoising import training_noised

    for prediction_type in ("v_prediction", "epsilon"):
        ddpm = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
        x0, eps = torch.randn(2, 2, 8, 4, 4)  # each (B=2, C=8, 4, 4)
        t = torch.tensor([50, 900])
        x_t, target = training_noised(ddpm, x0, eps, t)
        assert torch.allclose(x_t, ddpm.add_noise(x0, eps, t), atol=1e-6)
        expected = ddpm.get_velocity(x0, eps, t) if prediction_type == "v_prediction" else eps
        assert torch.allclose(target, expected, atol=1e-6)
