"""Best-of-N starting noise: let the generator pick, by its own likelihood, which noise to draw from.

A scene's layout (where each object goes, and whether one is drawn twice) is settled in the first few sampling
steps (docs/generator-runs.md, "Where duplicates come from"). So `choose_generators` starts N candidate noises
per image, runs each for the first `SELECT_FRACTION` of the steps, and scores every candidate's clean-latent
estimate x0 by the DiT's own
conditional denoising error: noise x0 to a few fixed timesteps, ask the model for its prediction given the prompt,
and sum the squared errors. That sum is the diffusion ELBO's Monte-Carlo estimate of -log p(x0 | prompt), up to
weighting (Ho et al., 2020; used as a classifier by Li et al., 2023, "Your Diffusion Model is Secretly a
Zero-Shot Classifier", https://arxiv.org/abs/2303.16203). The candidate the model finds most likely wins, and the
pipeline then samples from that candidate's generator exactly as it would from any other seed, so the trajectory,
callbacks and replays are those of an ordinary run.

No judge or label is involved: the score is the model's alone, and it works for any prompt. What it prefers is
the simpler scene: an object drawn twice, or a third one, costs likelihood; a blob in place of a small shape hardly
does, so shape errors are what it leaves (measured: docs/generator-runs.md). The implicit classifier
(the conditional error minus the unconditional one) was measured too and prefers the opposite, the scenes that
guidance inflates, so it is not used. Measured on two-object tuning prompts, 4 candidates: docs/generator-runs.md,
"Best-of-N starting noise".

Every candidate is scored with the same noises (paired), so candidates of one image differ only by what they drew.
"""

from __future__ import annotations

import math

import torch

from .denoising import training_noised
from .settings import check_batch, negative_prompts

SELECT_FRACTION = 0.3  # run the candidates through this share of the steps (9 of 30): the layout is set by then
SCORE_TIMESTEPS = (50, 150, 300, 450, 600, 750, 900)  # training timesteps at which x0 is re-noised and scored
SCORE_SEED = 0  # the scoring noise: fixed, so a prompt and seed always choose the same candidate


def select_steps(num_inference_steps: int) -> int:
    """How many steps the candidates run before one is chosen (at least 1)."""
    return max(1, math.ceil(SELECT_FRACTION * num_inference_steps))


@torch.no_grad()
def denoising_error(pipe, x0: torch.Tensor, text_context) -> torch.Tensor:
    """(B,) the conditional denoising error of clean latents x0 (B, C, h, w), summed over SCORE_TIMESTEPS: the
    model's -log p(x0 | text) up to weighting; lower is more likely. `text_context`: the conditional context of
    each row of x0 (no null half)."""
    generator = torch.Generator(device=x0.device).manual_seed(SCORE_SEED)
    error = torch.zeros(x0.shape[0], device=x0.device)
    for t in SCORE_TIMESTEPS:
        eps = torch.randn(x0.shape[1:], generator=generator, device=x0.device, dtype=x0.dtype).expand_as(x0)
        timesteps = torch.full((x0.shape[0],), t, device=x0.device)  # (B,)
        x_t, target = training_noised(pipe.scheduler, x0, eps, timesteps)
        with pipe.autocast(x0.device):
            pred = pipe.transformer(x_t, timesteps, text_context=text_context)
        error += ((pred.sample.float() - target.float()) ** 2).mean(dim=(1, 2, 3))
    return error


def _candidate_seeds(generator, batch_size: int, num_candidates: int) -> list[list[int]]:
    """(batch_size, num_candidates) seeds drawn from the caller's generator(s), or from torch's global RNG."""
    if generator is None or isinstance(generator, torch.Generator):
        device = "cpu" if generator is None else generator.device  # a CUDA generator draws on its device
        return torch.randint(0, 2**62, (batch_size, num_candidates), generator=generator, device=device).tolist()
    return [torch.randint(0, 2**62, (num_candidates,), generator=g, device=g.device).tolist() for g in generator]


@torch.no_grad()
def choose_generators(
    pipe,
    prompt,
    num_candidates: int,
    num_inference_steps: int,
    guidance_scale: float,
    negative_prompt: str | list[str] | None = "",
    generator=None,
    guidance_interval=None,
    codebook_snap: float = 0.0,
    first_block_cache: float = 0.0,
) -> tuple[list[torch.Generator], torch.Tensor]:
    """For each prompt, the generator of the most likely of `num_candidates` starting noises, set to where it
    started (pass it as `generator=` to sample that candidate), and the (B, N) denoising errors."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    batch_size, device = len(prompts), pipe._execution_device
    seeds = _candidate_seeds(generator, batch_size, num_candidates)  # (B, N)
    flat_prompts = [p for p in prompts for _ in range(num_candidates)]  # image-major: (B * N,)
    flat_negatives = [n for n in negative_prompts(negative_prompt, batch_size) for _ in range(num_candidates)]
    flat_gens = [torch.Generator(device=device).manual_seed(s) for row in seeds for s in row]
    run = pipe.stepwise(
        flat_prompts,
        num_inference_steps,
        guidance_scale,
        negative_prompt=flat_negatives,
        generator=flat_gens,
        guidance_interval=guidance_interval,
        codebook_snap=codebook_snap,
        num_candidates=1,
        first_block_cache=first_block_cache,  # each candidate's steps are those its own run would take
    )
    with pipe.progress_bar(total=select_steps(num_inference_steps)) as bar:  # the call's bar comes after it
        bar.set_description(f"best of {num_candidates}")
        for _ in range(select_steps(num_inference_steps)):
            x0 = run.step()["pred_x0"]
            bar.update()
    text_context = run.text_context if guidance_scale <= 1.0 else run.text_context.rows(slice(len(flat_prompts), None))
    errors = denoising_error(pipe, pipe.snap_latents(x0), text_context).view(batch_size, num_candidates)
    best = errors.argmin(dim=1).tolist()
    return [torch.Generator(device=device).manual_seed(seeds[b][k]) for b, k in enumerate(best)], errors


def best_generators(
    pipe,
    prompt,
    num_images_per_prompt: int,
    num_candidates: int,
    num_inference_steps: int,
    guidance,
    negative_prompt: str | list[str] | None = "",
    generator=None,
) -> list[torch.Generator]:
    """`choose_generators` for a pipeline call: per image of the batch (`num_images_per_prompt` per prompt, in
    `encode_prompt`'s order), the generator of the most likely candidate. `guidance`: a `denoising.Guidance`."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    per_prompt = check_batch(len(prompts), num_images_per_prompt, generator) // len(prompts)
    negatives = [n for n in negative_prompts(negative_prompt, len(prompts)) for _ in range(per_prompt)]
    winners, _ = choose_generators(
        pipe,
        [p for p in prompts for _ in range(per_prompt)],
        num_candidates,
        num_inference_steps,
        guidance.scale,
        negatives,
        generator,
        guidance.interval,
        guidance.codebook_snap,
        guidance.first_block_cache,
    )
    return winners
