"""The generator's training objective: the noise schedule, the v target and how each sample and cell is weighted.

The DiT learns to predict v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho, 2022, https://arxiv.org/abs/2202.00512)
under a 1000-step cosine schedule, with timesteps drawn uniformly. Each sample's error is weighted by `loss_weights`
(a capped form of Min-SNR, Hang et al. 2023, https://arxiv.org/abs/2303.09556), and each latent cell by
`object_cell_weights`, so small objects count in the loss. What else was tried (an epsilon target, plain Min-SNR,
other timestep draws, a grounding term) is in `docs/training-notes.md`.

Dimension letters: B batch, C latent channels, h x w latent grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

SNR_GAMMA = 5.0  # Min-SNR's cap, the paper's value; never changed in the shipped recipe


def training_scheduler(prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The forward process: 1000 steps, cosine schedule (Nichol & Dhariwal 2021), v-prediction by default
    (`prediction_type="epsilon"` describes runs from before v; the sampler takes either).

    `timestep_spacing="leading"` is passed explicitly so every scheduler made from this config inherits it
    (diffusers' from_config drops values left at their default): samplers then start at t = 1000 - 1000/N
    (e.g. 950 for 20 steps), not t = 999. Under the cosine schedule alpha_bar(999) = 2.4e-9, so turning an
    epsilon prediction into x0 there divides by sqrt(alpha_bar) = 5e-5 and solvers that do (DPM-Solver++,
    UniPC, Euler) blow small errors up into noisy images; alpha_bar(950) = 5.8e-3 is safe.
    """
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        clip_sample=False,
        timestep_spacing="leading",
    )


def loss_weights(noise_scheduler, t: torch.Tensor, snr_gamma: float = SNR_GAMMA) -> torch.Tensor:
    """Per-sample weights (B,) on the v loss, written in x0 space: a v error is an x0 error divided by (SNR + 1),
    and the x0 error counts min(SNR + 1, gamma) times ("min-snr-1"). That is the plain v loss (weight 1) up to
    SNR = gamma - 1 (about 70 % of uniform draws), then Min-SNR's cap on the easy low-noise steps. Plain Min-SNR
    (x0 weight min(SNR, gamma)) gives high noise almost no weight (0.02 at t = 900), and high noise is where a
    scene's coarse facts are decided: background, how many objects and where. `snr_gamma=0`: the plain loss."""
    if not snr_gamma:
        return torch.ones(t.shape)
    snr = compute_snr(noise_scheduler, t)
    return (snr + 1).clamp(max=snr_gamma) / (snr + 1)


def diffusion_loss(
    model,
    noise_scheduler,
    latents: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    text_states: torch.Tensor,
    text_masks: torch.Tensor,
    snr_gamma: float = SNR_GAMMA,
    cell_weights: torch.Tensor | None = None,
    device="cpu",
    teacher=None,
) -> torch.Tensor:
    """The denoising loss on clean `latents` (B, C, h, w): noise them to `t` (B,), predict v, weight each sample
    by `loss_weights` and, if given, each latent cell by `cell_weights` (B, 1, h, w; see `object_cell_weights`).
    With a `teacher` DiT the target is its v for the same input, not the data's (knowledge distillation: a
    target without the data's noise, which is what the teacher learnt to average out)."""
    if noise_scheduler.config.prediction_type != "v_prediction":
        raise ValueError("the generator trains on v-prediction: use training_scheduler()'s default")
    noisy = noise_scheduler.add_noise(latents, noise, t).to(device)
    inputs = (noisy, t.to(device), text_states.to(device), text_masks.to(device))
    pred = model(*inputs).sample
    if teacher is None:
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        with torch.no_grad():
            target = teacher(*inputs).sample.float()
    loss = F.mse_loss(pred.float(), target.to(device), reduction="none")  # (B, C, h, w)
    if cell_weights is not None:
        loss = loss * cell_weights.to(device)
    loss = loss.mean(dim=(1, 2, 3))  # (B,)
    return (loss * loss_weights(noise_scheduler, t, snr_gamma).to(device)).mean()


def object_cell_weights(ids: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Per-cell loss weights (B, 1, h, w) from token grids `ids` (B, h, w): cells whose code is not the image's
    most common one (its flat background, in shapes-v1) weigh `object_weight` times as much as the others,
    normalised to mean 1 per image so that each image's total weight (and `loss_weights`) is unchanged.

    A small shape covers 16 of 256 cells, so in the plain mean its shape is a few percent of the loss while
    the background, right early on, is most of it. `object_weight=1` gives the plain mean."""
    if not math.isfinite(object_weight) or object_weight <= 0:  # nan trained on NaN losses to the first sample
        raise ValueError(f"--object-loss-weight must be a positive number, got {object_weight}")
    background = ids.flatten(1).mode(dim=1).values
    w = torch.where(ids != background[:, None, None], float(object_weight), 1.0)
    return (w / w.mean(dim=(1, 2), keepdim=True)).unsqueeze(1)
