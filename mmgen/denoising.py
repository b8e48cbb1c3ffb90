"""One denoising step, shared by `MMGenPipeline.__call__` and the step-by-step `DenoisingRun`.

A `DenoisingRun` holds a sampling run in progress: the text context (computed once per prompt), the scheduler's
timesteps and the current latents. Each `step()` evaluates the DiT once (both guidance halves in one batch),
optionally pulls the x0 estimate toward the codebook, lets the scheduler step, then calls the step callback
(diffusers' `callback_on_step_end` convention). `__call__` is a loop over `step()`, so a run advanced by hand
(live previews, a "next step" button) lands exactly where the full call does.

Dimension letters: B batch, C latent channels (the code dimension), h x w latent grid.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput

from .settings import OTHER_SCHEDULERS, SCHEDULER_CLASSES, check_batch
from .step_cache import FirstBlockCache

LOWEST_START = 0.75  # of the training timesteps: a run that starts lower starts too far from pure noise
INTERPOLATED_SIGMAS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")


def set_schedule(scheduler, num_inference_steps: int, device=None) -> None:
    """`scheduler.set_timesteps`, or a ValueError saying why the run would not draw an image: a scheduler whose
    clean-image estimate mmgen does not read (flow matching, EDM, interpolated sigmas), or a step count whose first
    timestep is far from pure noise. The trained schedule's "leading" spacing (chosen: 30 steps start at t = 966,
    not at 999, where solvers blow small errors up) starts 1 step at t = 0, 2 at 500, 600 at 599, and DPM-Solver++
    and UniPC put all 1,000 at 0; the message names the nearest count that starts high enough."""
    name, allowed = type(scheduler).__name__, (*SCHEDULER_CLASSES.values(), *OTHER_SCHEDULERS)
    if not any(cls.__name__ in allowed for cls in type(scheduler).__mro__):  # one of them, or a subclass of one
        raise ValueError(f"{name} is not a scheduler mmgen can sample with; use one of {', '.join(sorted(allowed))}")
    interpolated = [k for k in INTERPOLATED_SIGMAS if scheduler.config.get(k)]
    if interpolated and getattr(scheduler, "init_noise_sigma", 1.0) == 1.0:  # the alpha family reads alphas_cumprod[t]
        raise ValueError(
            f"{name} with {interpolated[0]}=True steps between the trained noise levels, where mmgen's clean-image "
            f"estimate does not read it; load it with {interpolated[0]}=False"
        )
    if _first_timestep(scheduler, num_inference_steps, device) >= LOWEST_START * scheduler.config.num_train_timesteps:
        return
    start, top = float(scheduler.timesteps[0]), scheduler.config.num_train_timesteps
    tries = (n for d in range(1000) for n in (num_inference_steps - d, num_inference_steps + d) if 0 < n <= 1000)
    near = next((n for n in tries if _first_timestep(scheduler, n) >= LOWEST_START * top), None)
    steps = f"{num_inference_steps} steps of {name} start" if num_inference_steps > 1 else f"1 step of {name} starts"
    far = f"{steps} at timestep {start:.0f} of {top - 1}, too far from pure noise to draw an image"
    raise ValueError(f"{far}; try {near} steps" if near else f"{far}; try another scheduler")


def _first_timestep(scheduler, num_inference_steps: int, device=None) -> float:
    scheduler.set_timesteps(num_inference_steps, device=device)
    return float(scheduler.timesteps[0])


def _noise_level(scheduler, latents_t: torch.Tensor, timestep) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(sigma, None) for the Euler family (x = x0 + sigma eps), (None, alpha_bar) for the alpha family."""
    if getattr(scheduler, "init_noise_sigma", 1.0) > 1.0:
        index = (scheduler.timesteps == timestep).nonzero()[0].item()
        return scheduler.sigmas[index].to(latents_t), None
    return None, scheduler.alphas_cumprod[int(timestep)].to(latents_t)


def predict_x0(scheduler, latents_t: torch.Tensor, model_output: torch.Tensor, timestep) -> torch.Tensor:
    """Clean-latent estimate from the DiT's output at `timestep`, for the scheduler's `prediction_type`
    ("epsilon" or "v_prediction") and parametrisation (alpha: x_t = sqrt(a) x0 + sqrt(1 - a) eps, the
    DDPM/DDIM/DPM/UniPC family; sigma: x = x0 + sigma eps, the Euler family, whose model input is
    x / sqrt(sigma^2 + 1), i.e. the same x_t)."""
    v = scheduler.config.prediction_type == "v_prediction"
    sigma, alpha_bar = _noise_level(scheduler, latents_t, timestep)
    if sigma is not None:  # Euler family
        if v:
            return latents_t / (sigma**2 + 1) - model_output * sigma / (sigma**2 + 1).sqrt()
        return latents_t - sigma * model_output
    if v:  # v = sqrt(a) eps - sqrt(1 - a) x0
        return alpha_bar.sqrt() * latents_t - (1 - alpha_bar).sqrt() * model_output
    return (latents_t - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()


def model_output_for_x0(scheduler, latents_t: torch.Tensor, x0: torch.Tensor, timestep) -> torch.Tensor:
    """Inverse of `predict_x0`: the model output (epsilon or v) that predicts the clean latent `x0` at
    `timestep`. Lets a change to the x0 estimate reach any scheduler through its ordinary `step`."""
    v = scheduler.config.prediction_type == "v_prediction"
    sigma, alpha_bar = _noise_level(scheduler, latents_t, timestep)
    if sigma is not None:  # Euler family: x = x0 + sigma eps
        if v:
            return (latents_t / (sigma**2 + 1) - x0) * (sigma**2 + 1).sqrt() / sigma
        return (latents_t - x0) / sigma
    if v:
        return (alpha_bar.sqrt() * latents_t - x0) / (1 - alpha_bar).sqrt()
    return (latents_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def training_noised(scheduler, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Clean latents x0 (B, C, h, w) noised with `eps` (B, C, h, w) to training timesteps `t` (B,) by the forward
    process the DiT was trained on, and what it learnt to predict there (v or epsilon): (x_t, target), both
    (B, C, h, w). The model's denoising error on them is its -log p(x0 | text) up to weighting, which best-of-N
    (`mmgen.candidates`) and captioning (`mmgen.captioning`) read. Every DDPM-family scheduler keeps the training
    schedule (`alphas_cumprod`; set_timesteps leaves it alone)."""
    a = scheduler.alphas_cumprod.to(x0.device)[t].to(x0.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    target = a.sqrt() * eps - (1 - a).sqrt() * x0 if scheduler.config.prediction_type == "v_prediction" else eps
    return x_t, target


@dataclass
class StepOutput(BaseOutput):
    """What one step produced (also readable as a dict: `out["pred_x0"]`)."""

    step: int  # index of the step in the schedule
    timestep: torch.Tensor  # the scheduler's timestep at this step
    latents: torch.Tensor  # (B, C, h, w) x_t after the step (and after the callback, if it replaced them)
    pred_x0: torch.Tensor  # (B, C, h, w) the clean-latent estimate at this step
    noise_pred: torch.Tensor  # (B, C, h, w) the guided model output (epsilon or v)
    # (B, h, w) pred_x0's nearest codes, when the step snapped x0 toward them (a move toward its nearest code keeps
    # it nearest, so these are pred_x0's own); None without codebook snap
    tokens: torch.Tensor | None = None


@dataclass(frozen=True)
class Guidance:
    """How each step combines the conditional and unconditional predictions, pulls x0 to the codebook, and
    reuses the DiT's later blocks."""

    scale: float  # classifier-free guidance weight; <= 1: the conditional prediction alone
    interval: tuple[float, float] | None = None  # guide only timesteps in [low, high]; None: every step
    codebook_snap: float = 0.0  # move each x0 estimate this fraction of the way to its nearest codes
    first_block_cache: float = 0.0  # the run's first-block cache threshold (mmgen/step_cache.py); 0: off

    @property
    def enabled(self) -> bool:
        return self.scale > 1.0

    def applies_at(self, t) -> bool:
        return self.enabled and (self.interval is None or self.interval[0] <= float(t) <= self.interval[1])


def callback_tensor_inputs(callback, names: list[str] | None) -> list[str]:
    """The tensors a step callback is handed: a diffusers `PipelineCallback` names its own (as in diffusers'
    pipelines); otherwise `names`, by default the callback's own `tensor_inputs` (mmgen's recorders), else the
    latents alone."""
    if isinstance(callback, PipelineCallback | MultiPipelineCallbacks):
        return list(callback.tensor_inputs)
    return names or list(getattr(callback, "tensor_inputs", None) or ["latents"])


class DenoisingRun:
    """A sampling run in progress (made by `MMGenPipeline.stepwise`, and driven to the end by `__call__`).

    Each `step()` advances one step and returns its `StepOutput`; `result()` snaps the current latents to the
    nearest codes and decodes them. The run uses `pipe`'s scheduler; `stepwise` hands it a pipeline with a
    fresh scheduler of its own, so concurrent runs never disturb each other."""

    def __init__(
        self,
        pipe,
        prompt: str | list[str],
        guidance: Guidance,
        num_inference_steps: int,
        generator=None,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        negative_prompt: str | list[str] | None = "",
        num_images_per_prompt: int = 1,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ):
        self.pipe, self.scheduler, self.guidance = pipe, pipe.scheduler, guidance
        self.callback = callback_on_step_end
        self.callback_inputs = callback_tensor_inputs(callback_on_step_end, callback_on_step_end_tensor_inputs)
        pipe._guidance_scale, pipe._num_timesteps = guidance.scale, num_inference_steps  # what callbacks read
        device = pipe._execution_device
        n_prompts = 1 if isinstance(prompt, str) else len(prompt)
        batch_size = check_batch(n_prompts, num_images_per_prompt, generator)
        num_images_per_prompt = batch_size // n_prompts  # a whole number now (2.0 -> 2)
        self.prompt_embeds, self.text_context = pipe.prepare_text_context(
            prompt, device, num_images_per_prompt, guidance.scale, negative_prompt
        )
        self.null_half = guidance.enabled  # the text context holds the unconditional rows first
        set_schedule(self.scheduler, num_inference_steps, device)
        self.timesteps = self.scheduler.timesteps
        self.latents = pipe.prepare_latents(batch_size, pipe.transformer.dtype, device, generator, latents, start_step)
        self.extra_step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            self.extra_step_kwargs["generator"] = generator
        if start_step and hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start_step)
        self.next_step = start_step
        self.model_input: torch.Tensor | None = None  # what the DiT read at the last step (see `model_output`)
        self.x0_tokens: torch.Tensor | None = None  # (B, h, w) the last step's x0 codes, when it snapped
        threshold = guidance.first_block_cache  # the run's own cache: no other run or call sees it
        self.step_cache = FirstBlockCache(threshold, batch_size) if threshold else None

    # kept as attributes for run cards and the app's info line
    @property
    def guidance_scale(self) -> float:
        return self.guidance.scale

    @property
    def guidance_interval(self) -> tuple[float, float] | None:
        return self.guidance.interval

    @property
    def codebook_snap(self) -> float:
        return self.guidance.codebook_snap

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def done(self) -> bool:
        return self.next_step >= self.num_steps

    @torch.no_grad()
    def model_output(self, latents: torch.Tensor, t) -> torch.Tensor:
        """The guided model output at step t. With guidance, the unconditional and conditional halves of the
        text context run as one batch, combined as uncond + w * (cond - uncond); outside the guidance interval
        only the conditional half runs. With codebook snap, the output is changed so that its x0 estimate moves
        that fraction of the way to the nearest codes."""
        pipe, g = self.pipe, self.guidance
        guided, context = g.applies_at(t), self.text_context
        if self.null_half and not guided:
            context = context.rows(slice(latents.shape[0], None))  # the conditional half
        model_in = self.scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
        self.model_input = model_in[-latents.shape[0] :]  # (B, C, h, w) the conditional rows, to replay the step
        with pipe.autocast(latents.device):
            out = pipe.transformer(model_in, t.expand(len(model_in)), text_context=context, step_cache=self.step_cache)
        out = out.sample.to(latents.dtype)
        if guided:
            uncond, cond = out.chunk(2)
            out = uncond + g.scale * (cond - uncond)
        self.x0_tokens = None
        if g.codebook_snap > 0:
            x0 = predict_x0(self.scheduler, latents, out, t)
            self.x0_tokens = pipe.latents_to_tokens(x0)
            x0 = torch.lerp(x0, pipe.tokens_to_latents(self.x0_tokens).to(x0.dtype), g.codebook_snap)
            out = model_output_for_x0(self.scheduler, latents, x0, t)
        return out

    @torch.no_grad()
    def step(self) -> StepOutput:
        """Advance one step: model output, x0 estimate, the scheduler's step, then the step callback."""
        if self.done:
            raise ValueError(f"this run has finished its {self.num_steps} steps")
        i, t = self.next_step, self.timesteps[self.next_step]
        noise_pred = self.model_output(self.latents, t)
        pred_x0 = predict_x0(self.scheduler, self.latents, noise_pred, t)
        self.latents = self.scheduler.step(noise_pred, t, self.latents, **self.extra_step_kwargs).prev_sample
        if self.callback is not None:
            local = {
                "latents": self.latents,
                "noise_pred": noise_pred,
                "pred_x0": pred_x0,
                "prompt_embeds": self.prompt_embeds,
                "model_input": self.model_input,
            }
            handed = {k: local[k] for k in self.callback_inputs}
            returned = self.callback(self.pipe, i, t, dict(handed)) or {}
            # diffusers' callbacks end `return callback_kwargs`: what comes back unchanged is no change
            self._take({k: v for k, v in returned.items() if not (k in handed and v is handed[k])})
        self.next_step += 1
        return StepOutput(i, t, self.latents, pred_x0, noise_pred, self.x0_tokens)

    def _take(self, result: dict) -> None:
        """What a step callback changed: the latents; the text states (`prompt_embeds`: all of them, or only the
        conditional rows, as diffusers' `SDCFGCutoffCallback` returns with guidance turned off); the guidance
        scale, which diffusers' callbacks set as `pipe._guidance_scale`."""
        result = dict(result)
        if "latents" in result:
            self._replace_latents(result.pop("latents"))
        if "prompt_embeds" in result:
            self._replace_text(result.pop("prompt_embeds"))
        if result:
            raise ValueError(f"a step callback may return latents and prompt_embeds; it returned {sorted(result)}")
        scale = float(self.pipe._guidance_scale)
        if scale != self.guidance.scale:
            if scale > 1 and not self.null_half:
                raise ValueError("a step callback cannot turn guidance on: the run has no unconditional text states")
            self.guidance = dataclasses.replace(self.guidance, scale=scale)

    def _replace_latents(self, latents) -> None:
        """Latents from a callback: a float tensor of the run's shape, taken in the run's dtype and device."""
        shape = tuple(self.latents.shape)
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape or not latents.is_floating_point():
            tensor = isinstance(latents, torch.Tensor)
            got = f"{latents.dtype} {tuple(latents.shape)}" if tensor else type(latents).__name__
            raise ValueError(f"a step callback's latents must be a float tensor of shape {shape}, got {got}")
        self.latents = latents.to(self.latents)

    def _replace_text(self, embeds: torch.Tensor) -> None:
        """New text states (B or 2B, L, E) from a callback: the text context is computed again from them."""
        rows, half = len(self.prompt_embeds), len(self.prompt_embeds) // 2
        allowed = (rows, half) if self.null_half else (rows,)
        if embeds.shape[1:] != self.prompt_embeds.shape[1:] or len(embeds) not in allowed:
            raise ValueError(
                f"a step callback's prompt_embeds must have shape ({' or '.join(map(str, allowed))}, "
                f"{', '.join(map(str, self.prompt_embeds.shape[1:]))}), got {tuple(embeds.shape)}"
            )
        mask = self.text_context.mask
        if len(embeds) < rows:  # the conditional rows alone: no unconditional pass from here on
            mask, self.null_half = (None if mask is None else mask[half:]), False
        self.prompt_embeds = embeds
        with self.pipe.autocast(embeds.device):
            self.text_context = self.pipe.transformer.prepare_text(embeds, mask)

    @torch.no_grad()
    def result(self, output_type: str = "pil"):
        """The current latents snapped to their nearest codes and decoded (`MMGenPipelineOutput`)."""
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be pil, np, pt or latent, got {output_type!r}")
        if not torch.isfinite(self.latents).all():  # a callback's or the caller's NaN would snap to code 0 unseen
            raise ValueError("the latents hold NaN or infinite values: no token grid can be read from them")
        return self.pipe.snap_and_decode(self.latents, output_type)
