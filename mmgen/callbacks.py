"""Step callbacks for MMGenPipeline: record the denoising trajectory without special cases in the loop.

    recorder = TrajectoryRecorder()
    out = pipe(prompt, callback_on_step_end=recorder, callback_on_step_end_tensor_inputs=recorder.tensor_inputs)
    step = recorder.steps[5]   # timestep, x_t, predicted x0, its token grid, changed tokens, decoded x0 image

Each record holds x_t as the DiT read it at the step (the scheduler's scaled input), the latents after the step
(where a replay or a branch starts), the pipeline's estimate of the clean latent x0 at that step, the x0's
nearest-code token grid, and which tokens changed since the previous step. Decoding x0 to pixels costs a decoder
pass per step, so it is optional (`decode=False`; `decode_step` does it later).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
from diffusers.utils.torch_utils import randn_tensor

from .viz import change_map, latent_rgb, principal_axes, token_map


@dataclass
class TrajectoryStep:
    step: int
    timestep: float
    latents: torch.Tensor  # (B, C, h, w) the latents after this step: the next step's x_t, unscaled
    pred_x0: torch.Tensor  # (B, C, h, w) predicted clean latents
    tokens: torch.Tensor  # (B, h, w) nearest codes of pred_x0
    changed: torch.Tensor  # (B, h, w) bool: tokens that differ from the previous step's (all True at first)
    images: list[PIL.Image.Image] = field(default_factory=list)  # decoded pred_x0, when decoded
    # (B, C, h, w) x_t at this step as the DiT read it: sqrt(abar) x0 + sqrt(1 - abar) noise for every scheduler
    # (an Euler-family x0 + sigma noise, scaled); None when the callback was not handed "model_input"
    model_input: torch.Tensor | None = None


class TrajectoryRecorder:
    """A `callback_on_step_end` that records every step (it asks for its own `tensor_inputs`)."""

    tensor_inputs = ["latents", "pred_x0", "model_input"]

    def __init__(self, decode: bool = True):
        self.decode = decode
        self.steps: list[TrajectoryStep] = []
        self._axes = None  # the codebook's principal axes, for drawing x_t

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        latents, pred_x0 = callback_kwargs["latents"], callback_kwargs["pred_x0"]
        tokens = pipe.latents_to_tokens(pred_x0)
        previous = next((s.tokens for s in reversed(self.steps) if s.step < step), None)
        changed = torch.ones_like(tokens, dtype=torch.bool) if previous is None else tokens != previous
        record = TrajectoryStep(
            step, float(timestep), latents.detach().clone(), pred_x0.detach().clone(), tokens, changed
        )
        if callback_kwargs.get("model_input") is not None:
            record.model_input = callback_kwargs["model_input"].detach().clone()
        if self.decode:
            record.images = pipe.decode_tokens(tokens)
        self.steps.append(record)
        return {}

    def decode_step(self, pipe, index: int) -> list[PIL.Image.Image]:
        record = self.steps[index]
        if not record.images:
            record.images = pipe.decode_tokens(record.tokens)
        return record.images

    def render_step(self, pipe, k: int, index: int = 0, cell: int = 8) -> dict:
        """Step k of image `index`, drawn: x_t in colour (what the DiT read at step k's timestep, projected on the
        codebook's top 3 principal axes, as the app's Trajectory tab draws it), the decoded x0 estimate, its token
        map, the changed-token map and how many tokens changed."""
        record = self.steps[k]
        if record.model_input is None:
            raise ValueError('x_t is drawn from what the DiT read: record with the tensor input "model_input"')
        if self._axes is None:
            self._axes = principal_axes(pipe.vqvae.quantizer.codebook.detach())
        num_codes = pipe.vqvae.config.num_codes
        return {
            "step": record.step,
            "timestep": record.timestep,
            "x_t": latent_rgb(record.model_input[index].float() / pipe.scaling_factor, self._axes, scale=1.0),
            "x0": self.decode_step(pipe, k)[index],
            "tokens": token_map(record.tokens[index], num_codes, cell=cell),
            "changed": change_map(record.changed[index], cell=cell),
            "n_changed": int(record.changed[index].sum()),
        }

    def render(self, pipe, index: int = 0, cell: int = 8) -> list[dict]:
        """`render_step` for every recorded step (decoded x0 images are reused when already decoded)."""
        return [self.render_step(pipe, k, index, cell) for k in range(len(self.steps))]


class LatentInpainter:
    """A `callback_on_step_end` that regenerates only a masked region of a known token grid (inpainting in
    the latent space). After every step, cells outside the mask are reset to the known latents noised to the
    level of the next step (RePaint, Lugmayr et al. 2022, without resampling), so the generator fills the
    region in agreement with its surroundings; after the last step they are the known codes exactly.

        inpaint = LatentInpainter(known_latents, mask, generator=torch.Generator().manual_seed(0))
        out = pipe(prompt, callback_on_step_end=inpaint, callback_on_step_end_tensor_inputs=inpaint.tensor_inputs)
    """

    tensor_inputs = ["latents"]

    def __init__(
        self, known_latents: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None, then=None
    ):
        """known_latents (B, C, h, w) already scaled (codes x scaling_factor); mask (h, w) or (B, 1, h, w),
        True where the generator paints; `then`: another step callback, called after this one with its latents
        (e.g. an app's time limit)."""
        self.known, self.then = known_latents, then
        self.mask = mask.bool().reshape(-1, 1, *mask.shape[-2:])
        known = self.known
        self.noise = randn_tensor(known.shape, generator=generator, device=known.device, dtype=known.dtype)

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        timesteps = pipe.scheduler.timesteps
        if step + 1 < len(timesteps):
            known = pipe.scheduler.add_noise(self.known, self.noise, timesteps[step + 1 : step + 2])
        else:
            known = self.known
        latents = callback_kwargs["latents"]
        out = {"latents": torch.where(self.mask.to(latents.device), latents, known.to(latents))}
        return out | ((self.then(pipe, step, timestep, dict(out)) or {}) if self.then is not None else {})


def inpaint_grids(tokens, mask, side: int, factor: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (side, side) long, mask (side, side) bool), on `device`, from what `MMGenPipeline.inpaint` is given:
    tensors or arrays, a batch of one allowed, a float mask thresholded at 0.5 (as diffusers' masks are); a
    ValueError naming the one that is not the generator's grid (`factor`: pixels per token)."""
    grids = []
    for name, value in (("token grid", tokens), ("mask", mask)):
        grid = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        grid = grid[0] if grid.ndim == 3 and len(grid) == 1 else grid
        if tuple(grid.shape) != (side, side):
            got = "×".join(map(str, grid.shape)) or "a single number"
            px = side * factor
            raise ValueError(
                f"The generator paints {side}×{side} token grids ({px}×{px} px images); the {name} is {got}."
            )
        grids.append(grid)
    tokens, mask = (grid.to(device) for grid in grids)
    if tokens.is_floating_point() and not (torch.isfinite(tokens).all() and torch.equal(tokens, tokens.round())):
        raise ValueError("The token grid holds numbers that are not token ids (whole numbers).")
    if mask.is_floating_point() and not torch.isfinite(mask).all():
        raise ValueError("The mask holds NaN or infinite values.")
    return tokens.long(), (mask > 0.5 if mask.is_floating_point() else mask.bool())
