"""MMGenPipeline: text -> latent grid (DiT + a diffusers scheduler) -> nearest codes -> image (VQ-VAE decoder).

    pipe = MMGenPipeline.from_pretrained("assets/mmgen-base")
    out = pipe("a large red circle in the top left on a white background", generator=torch.Generator().manual_seed(0))
    out.images[0], out.tokens[0]          # a 64x64 PIL image and its exact 16x16 token grid

The sampler runs in the tokenizer's continuous code space (latents are code vectors times `scaling_factor`);
the final latent is snapped to the nearest codes, so every image has an exact token grid. Inference only:
training lives in `mmgen/training/train_generator.py`. The loop follows diffusers' current pipelines
(`check_inputs`, `encode_prompt`, `prepare_latents`, numbered steps, `callback_on_step_end`).
"""

from __future__ import annotations

import inspect
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import snapshot_download

from .candidates import MAX_CANDIDATES, choose_generators
from .models.dit import DiT
from .models.text_encoder import MAX_TOKENS, encode_text, load_text_encoder
from .models.vqvae import VQVAE

logger = logging.get_logger(__name__)

SCHEDULERS = {  # names for the command line and the app; any diffusers scheduler works through from_config
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "ddpm": DDPMScheduler,
}
# Defaults of __call__, chosen by measured accuracy (`mmgen eval-generator --sweep`, see the model card).
DEFAULT_STEPS = 30  # 30 beat 20 on tuning prompts, on both of the last two runs (run 22 in the model card)
DEFAULT_GUIDANCE_SCALE = 4.0
DEFAULT_GUIDANCE_INTERVAL = (250.0, 999.0)  # leave the last steps (t < 250) unguided: small shapes keep their colour
DEFAULT_CODEBOOK_SNAP = 0.5  # pull each step's x0 estimate halfway to its codes (chosen on tuning prompts)
DEFAULT_NUM_CANDIDATES = 4  # best-of-4 starting noise (mmgen/candidates.py; chosen on tuning prompts)
MAX_PROMPT_CHARS = 2000
PROMPT_CACHE_SIZE = 256  # encoded prompts kept per text encoder
_PROMPT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # text encoder -> OrderedDict
_PROMPT_CACHE_LOCK = threading.Lock()  # longer input is certainly not a caption; it is refused rather than tokenised


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast about halves the DiT's
    time; elsewhere bf16 is emulated and slower than float32. Reads /proc/cpuinfo (Linux); False when unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


@dataclass
class MMGenPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    tokens: torch.Tensor  # (B, h, w) long: the exact token grid of each image


class MMGenPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vqvae"
    _callback_tensor_inputs = ["latents", "noise_pred", "pred_x0", "prompt_embeds"]

    def __init__(self, vqvae: VQVAE, transformer: DiT, text_encoder, tokenizer, scheduler):
        super().__init__()
        self.register_modules(
            vqvae=vqvae, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """As DiffusionPipeline.from_pretrained; the text encoder and tokenizer default to the bundled MiniLM
        when the model folder does not hold them (the shipped model does not copy the 90 MB encoder)."""
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        if not os.path.isdir(pretrained_model_name_or_path):
            # A Hub repo id: fetch the whole folder first. diffusers' own download step filters files by the
            # library named in model_index.json, which it cannot do for our third-party `mmgen` classes.
            pretrained_model_name_or_path = snapshot_download(str(pretrained_model_name_or_path), **hub_kwargs)
        # Weights ship in fp16; compute in float32 on CPU unless the caller asks for a dtype (`torch_dtype` is
        # the name diffusers used before 0.42; setting ours beside a caller's would be an error there).
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            kwargs["dtype"] = torch.float32
        index = cls.load_config(pretrained_model_name_or_path, **hub_kwargs)
        missing = [n for n in ("text_encoder", "tokenizer") if kwargs.get(n) is None and not any(index.get(n) or [])]
        if missing:
            tokenizer, text_encoder = load_text_encoder()
            defaults = {"text_encoder": text_encoder, "tokenizer": tokenizer}
            kwargs.update({n: defaults[n] for n in missing})
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def use_scheduler(self, name: str) -> None:
        """Swap in a scheduler by its short name (see SCHEDULERS), keeping the trained noise schedule."""
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
        self.scheduler = SCHEDULERS[name].from_config(self.scheduler.config)

    def with_scheduler(self, name: str | None = None) -> MMGenPipeline:
        """A pipeline sharing this one's models (no copy) with its own fresh scheduler: `name`, or the current
        one's class. Schedulers keep per-run state, so concurrent runs (an app's queue) each take one."""
        if name is not None and name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
        cls = SCHEDULERS[name] if name else type(self.scheduler)
        pipe = type(self)(**{**self.components, "scheduler": cls.from_config(self.scheduler.config)})
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        pipe.set_autocast(getattr(self, "_autocast_dtype", None))
        return pipe

    @property
    def scaling_factor(self) -> float:
        return self.transformer.config.scaling_factor

    # ---------------------------------------------------------------- inputs
    def check_inputs(
        self,
        prompt,
        num_inference_steps,
        guidance_scale,
        start_step,
        latents,
        callback_on_step_end_tensor_inputs,
        guidance_interval=None,
        codebook_snap=0.0,
        num_candidates: int = 1,
    ):
        if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
            raise ValueError("`prompt` must be a string or a non-empty list of strings")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise ValueError("prompts must be non-empty text, e.g. 'a red circle on a white background'")
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt of {len(p)} characters is too long (at most {MAX_PROMPT_CHARS})")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 1000:
            raise ValueError(f"`num_inference_steps` must be an integer in 1..1000, got {num_inference_steps!r}")
        if guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale}")
        if guidance_interval is not None:
            lo, hi = guidance_interval
            if not 0 <= lo <= hi:
                raise ValueError(
                    f"`guidance_interval` must be (low, high) timesteps with 0 <= low <= high, "
                    f"got {guidance_interval!r}"
                )
        if not 0 <= codebook_snap <= 1:
            raise ValueError(f"`codebook_snap` must be in 0..1 (0: off, 1: onto the codes), got {codebook_snap}")
        if not isinstance(num_candidates, int) or not 1 <= num_candidates <= MAX_CANDIDATES:
            raise ValueError(f"`num_candidates` must be an integer in 1..{MAX_CANDIDATES}, got {num_candidates!r}")
        if not 0 <= start_step < num_inference_steps:
            raise ValueError(f"`start_step` must be in 0..{num_inference_steps - 1}, got {start_step}")
        if start_step > 0 and latents is None:
            raise ValueError("starting from a later step needs the `latents` of that step")
        bad = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(f"callback tensor inputs {bad} are not in {self._callback_tensor_inputs}")

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str],
        device,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str = "",
    ):
        """Text -> (prompt_embeds (B, L, E), mask (B, L), negative_embeds, negative_mask); the negative is the
        null condition used in training (the empty prompt) unless `negative_prompt` says otherwise."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids = self.tokenizer(prompts, truncation=False)["input_ids"]
        if any(len(i) > MAX_TOKENS for i in ids):
            logger.warning(f"prompt longer than {MAX_TOKENS} tokens: truncated")

        def encode(texts):
            embeds, mask = self._encode_cached(texts)
            return (
                embeds.to(device).repeat_interleave(num_images_per_prompt, dim=0),
                mask.to(device).repeat_interleave(num_images_per_prompt, dim=0),
            )

        embeds, mask = encode(prompts)
        neg_embeds = neg_mask = None
        if do_classifier_free_guidance:
            neg_embeds, neg_mask = encode([negative_prompt] * len(prompts))
        return embeds, mask, neg_embeds, neg_mask

    def prepare_text_context(
        self, prompt, device, num_images_per_prompt: int, guidance_scale: float, negative_prompt: str = ""
    ):
        """Prompt -> (text states, the DiT's TextContext). With guidance (> 1), the null condition's half comes
        first, so one batched pass gives both predictions; the context is computed once per run, not per step."""
        do_cfg = guidance_scale > 1.0
        embeds, mask, neg_embeds, neg_mask = self.encode_prompt(
            prompt, device, num_images_per_prompt, do_cfg, negative_prompt
        )
        if do_cfg:
            embeds, mask = torch.cat([neg_embeds, embeds]), torch.cat([neg_mask, mask])
        with self._autocast(device):
            return embeds, self.transformer.prepare_text(embeds, mask)

    def _encode_cached(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """encode_text with a small LRU cache per text encoder: the empty prompt (guidance's null condition)
        and a prompt tried with several seeds are encoded once. Each text is encoded on its own, so its states
        never depend on which other prompts share the batch."""
        with _PROMPT_CACHE_LOCK:  # encoding one prompt takes milliseconds: simplest to hold the lock throughout
            cache = _PROMPT_CACHE.setdefault(self.text_encoder, OrderedDict())
            rows = []
            for text in texts:
                key = (self.tokenizer.name_or_path, text)
                if key not in cache:
                    states, mask = encode_text(self.tokenizer, self.text_encoder, [text])
                    cache[key] = (states[0], mask[0])
                cache.move_to_end(key)
                rows.append(cache[key])
            while len(cache) > PROMPT_CACHE_SIZE:
                cache.popitem(last=False)
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])

    def set_autocast(self, dtype: torch.dtype | None) -> None:
        """Run the transformer's matmuls in `dtype` (torch.bfloat16: ~2x faster on CPUs with AVX512-BF16 or
        AMX), or None for float32. Weights stay float32; see the benchmark and the tolerance test."""
        self._autocast_dtype = dtype

    def _autocast(self, device):
        dtype = getattr(self, "_autocast_dtype", None)
        return torch.autocast(
            device_type=torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
        )

    def prepare_latents(self, batch_size, dtype, device, generator, latents=None):
        c, s = self.transformer.config.in_channels, self.transformer.config.sample_size
        shape = (batch_size, c, s, s)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")
            return latents.to(device=device, dtype=dtype)
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype) * self.scheduler.init_noise_sigma

    # ---------------------------------------------------------------- latents <-> tokens
    def latents_to_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> nearest code ids (B, h, w)."""
        return self.vqvae.quantizer.eval()(latents / self.scaling_factor).indices

    def snap_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> the scaled code vectors of their nearest codes (same shape)."""
        codes = self.vqvae.quantizer.indices_to_codes(self.latents_to_tokens(latents)) * self.scaling_factor
        return codes.to(latents.dtype)

    def decode_tokens(self, tokens: torch.Tensor, output_type: str = "pil"):
        images = self.vqvae.decode_indices(tokens)  # (B, 3, H, W) in [-1, 1]
        if output_type == "pt":
            return images
        arr = ((images.float() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        return [PIL.Image.fromarray(a) for a in arr] if output_type == "pil" else arr.astype(np.float32) / 255

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        guidance_interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL,
        codebook_snap: float = DEFAULT_CODEBOOK_SNAP,
        num_candidates: int = DEFAULT_NUM_CANDIDATES,
        negative_prompt: str = "",
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        prev_pred_x0: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ):
        """Generate images from text.

        Args:
            prompt: one text or a list.
            num_inference_steps: sampler steps (1..1000).
            guidance_scale: classifier-free guidance weight; 0 or 1 disables the unconditional pass.
            guidance_interval: (low, high) in training timesteps (0..999): guide only the steps whose timestep
                lies in it, and take the conditional prediction alone (one pass, not two) elsewhere. Guidance at
                the noisiest steps mostly costs variety (Kynkaanniemi et al., 2024,
                https://arxiv.org/abs/2404.07724); here, guidance at the least noisy steps draws small shapes in
                too dark or pale a shade, so the default leaves t < 250 (the last 8 of 30 steps) unguided. None:
                guide every step.
            codebook_snap: at every step, move the predicted clean latent this fraction of the way to its nearest
                codes before the scheduler's step (0: off, 1: onto the codes). Like Imagen's dynamic
                thresholding, which clips the x0 estimate, but projecting onto the codebook, where the final
                latent must land anyway.
            num_candidates: best-of-N starting noise: draw this many noises per image, run each through the first
                30 % of the steps and sample the one whose clean-latent estimate the model finds most likely (its
                own conditional denoising error; `mmgen/candidates.py`). Measured cost: 2.1x one noise's time at
                4, 2.8x at 8 (`make bench`). 1: the generator's own noise. Ignored when `latents` are given (the
                noise is then fixed).
            latents: start from these (B, C, h, w) latents instead of fresh noise: the noise of step 0, or,
                with `start_step=k`, the x_t of step k of an earlier run (replay or branch from step k).
            start_step: index of the first step to run; the schedule is that of `num_inference_steps`.
            prev_pred_x0: for a self-conditioned transformer (`self_condition` in its config) started at step k:
                the "pred_x0" of step k - 1 of the earlier run, which step k reads; without it step k reads
                none, as step 0 does. Other transformers ignore it.
            output_type: "pil", "np" (float in [0, 1]), "pt" ([-1, 1]) or "latent" (the final snapped latents).
            callback_on_step_end: called as `fn(pipe, step, timestep, callback_kwargs)` after each step; it may
                return a dict that replaces tensors (e.g. {"latents": ...}). Tensor inputs: "latents" (after the
                step), "noise_pred" (the guided model output: epsilon or v, per the scheduler's
                `prediction_type`), "pred_x0" (the clean-latent estimate), "prompt_embeds".
        """
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        # 1. Check inputs
        self.check_inputs(
            prompt,
            num_inference_steps,
            guidance_scale,
            start_step,
            latents,
            callback_on_step_end_tensor_inputs,
            guidance_interval,
            codebook_snap,
            num_candidates,
        )
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be pil, np, pt or latent, got {output_type!r}")
        device = self._execution_device
        batch_size = (1 if isinstance(prompt, str) else len(prompt)) * num_images_per_prompt
        self._guidance_scale, self._num_timesteps = guidance_scale, num_inference_steps

        # 2. Encode the prompt (and the null condition for guidance); with candidates, choose each image's noise
        if num_candidates > 1 and latents is None:
            generator = self.choose_generators(
                prompt,
                num_candidates,
                num_images_per_prompt,
                num_inference_steps,
                guidance_scale,
                negative_prompt,
                generator,
                guidance_interval,
                codebook_snap,
            )
        embeds, text_context = self.prepare_text_context(
            prompt, device, num_images_per_prompt, guidance_scale, negative_prompt
        )

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 4. Latents
        latents = self.prepare_latents(batch_size, self.transformer.dtype, device, generator, latents)
        extra_step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            extra_step_kwargs["generator"] = generator

        # 5. Denoising loop
        if start_step and hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start_step)
        self_conditioned = self.transformer.config.get("self_condition", False)
        pred_x0 = prev_pred_x0  # what a self-conditioned transformer reads at the next step
        for i, t in enumerate(self.progress_bar(timesteps[start_step:]), start=start_step):
            noise_pred = self.guided_noise(
                self.scheduler,
                latents,
                t,
                text_context,
                guidance_scale,
                guidance_interval,
                codebook_snap,
                self_cond=pred_x0 if self_conditioned else None,
            )
            # computed only when the model reads it at the next step or a callback asks
            if self_conditioned or "pred_x0" in callback_on_step_end_tensor_inputs:
                pred_x0 = predict_x0(self.scheduler, latents, noise_pred, t)
            latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample

            if callback_on_step_end is not None:
                local = {"latents": latents, "noise_pred": noise_pred, "prompt_embeds": embeds, "pred_x0": pred_x0}
                callback_kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                result = callback_on_step_end(self, i, t, callback_kwargs) or {}
                latents = result.pop("latents", latents)

        # 6. Snap to the nearest codes and decode
        output = self.snap_and_decode(latents, output_type)
        self.maybe_free_model_hooks()
        return output if return_dict else (output.images, output.tokens)

    def choose_generators(
        self,
        prompt,
        num_candidates,
        num_images_per_prompt,
        num_inference_steps,
        guidance_scale,
        negative_prompt,
        generator,
        guidance_interval,
        codebook_snap,
    ) -> list[torch.Generator]:
        """Per image, the generator of the most likely of `num_candidates` starting noises (mmgen/candidates.py)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]  # the order of encode_prompt's batch
        if isinstance(generator, list) and len(generator) != len(prompts):
            raise ValueError(f"got {len(generator)} generators for a batch of {len(prompts)} images")
        winners, _ = choose_generators(
            self,
            prompts,
            num_candidates,
            num_inference_steps,
            guidance_scale,
            negative_prompt,
            generator,
            guidance_interval,
            codebook_snap,
        )
        return winners

    def guided_noise(
        self,
        scheduler,
        latents,
        t,
        text_context,
        guidance_scale: float,
        guidance_interval: tuple[float, float] | None = None,
        codebook_snap: float = 0.0,
        self_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One model evaluation at step t; with guidance, the unconditional and conditional halves of
        `text_context` run as one batch and are combined as uncond + w * (cond - uncond). Outside
        `guidance_interval`, only the conditional half runs. With `codebook_snap`, the output is changed so
        that its x0 estimate moves that fraction of the way to the nearest codes. `self_cond`: the previous
        step's x0 estimate, read by a self-conditioned transformer (both halves get the same one)."""
        do_cfg = guidance_scale > 1.0
        if do_cfg and guidance_interval is not None and not guidance_interval[0] <= float(t) <= guidance_interval[1]:
            do_cfg, text_context = False, text_context.rows(slice(latents.shape[0], None))  # the conditional half
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2) if do_cfg else latents, t)
        if self_cond is not None and do_cfg:
            self_cond = torch.cat([self_cond] * 2)
        with self._autocast(latents.device):
            noise_pred = self.transformer(
                model_in, t.expand(model_in.shape[0]), text_context=text_context, self_cond=self_cond
            ).sample
        noise_pred = noise_pred.to(latents.dtype)
        if do_cfg:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        if codebook_snap > 0:
            x0 = predict_x0(scheduler, latents, noise_pred, t)
            x0 = torch.lerp(x0, self.snap_latents(x0), codebook_snap)
            noise_pred = model_output_for_x0(scheduler, latents, x0, t)
        return noise_pred

    def snap_and_decode(self, latents: torch.Tensor, output_type: str = "pil") -> MMGenPipelineOutput:
        """Final latents -> nearest codes (the exact token grid) -> images (or the snapped latents)."""
        tokens = self.latents_to_tokens(latents)
        if output_type == "latent":
            images = self.vqvae.quantizer.indices_to_codes(tokens) * self.scaling_factor
        else:
            images = self.decode_tokens(tokens, output_type)
        return MMGenPipelineOutput(images=images, tokens=tokens)

    @torch.no_grad()
    def stepwise(
        self,
        prompt,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        negative_prompt: str = "",
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        guidance_interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL,
        codebook_snap: float = DEFAULT_CODEBOOK_SNAP,
        prev_pred_x0: torch.Tensor | None = None,
        num_candidates: int = DEFAULT_NUM_CANDIDATES,
    ) -> DenoisingRun:
        """The same sampling as `__call__`, advanced one step per `run.step()` call: for live previews and a
        "next step" button. The run owns a fresh copy of the scheduler, so runs never disturb each other. With
        `num_candidates` > 1 the starting noise is chosen first, as `__call__` chooses it, and the run is the
        winner's ordinary run (it lands where `__call__` does)."""
        self.check_inputs(
            prompt,
            num_inference_steps,
            guidance_scale,
            start_step,
            latents,
            [],
            guidance_interval,
            codebook_snap,
            num_candidates,
        )
        if num_candidates > 1 and latents is None:
            generator = self.choose_generators(
                prompt,
                num_candidates,
                1,
                num_inference_steps,
                guidance_scale,
                negative_prompt,
                generator,
                guidance_interval,
                codebook_snap,
            )
        return DenoisingRun(
            self,
            prompt,
            num_inference_steps,
            guidance_scale,
            negative_prompt,
            generator,
            latents,
            start_step,
            guidance_interval,
            codebook_snap,
            prev_pred_x0,
        )

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def num_timesteps(self):
        return self._num_timesteps


class DenoisingRun:
    """A sampling run in progress (made by `MMGenPipeline.stepwise`). Each `step()` does exactly what one
    iteration of `MMGenPipeline.__call__`'s loop does and returns that step's tensors; `result()` snaps and
    decodes the current latents."""

    def __init__(
        self,
        pipe: MMGenPipeline,
        prompt,
        num_inference_steps,
        guidance_scale,
        negative_prompt,
        generator,
        latents,
        start_step,
        guidance_interval=None,
        codebook_snap=0.0,
        prev_pred_x0=None,
    ):
        self.pipe = pipe.with_scheduler()
        self.scheduler, self.guidance_scale = self.pipe.scheduler, guidance_scale
        self.guidance_interval, self.codebook_snap = guidance_interval, codebook_snap
        device = pipe._execution_device
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        _, self.text_context = self.pipe.prepare_text_context(prompt, device, 1, guidance_scale, negative_prompt)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self.timesteps = self.scheduler.timesteps
        self.latents = self.pipe.prepare_latents(batch_size, pipe.transformer.dtype, device, generator, latents)
        self.extra_step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            self.extra_step_kwargs["generator"] = generator
        if start_step and hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start_step)
        self.next_step = start_step
        self.pred_x0 = prev_pred_x0  # what a self-conditioned transformer reads at the next step
        self.self_conditioned = pipe.transformer.config.get("self_condition", False)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def done(self) -> bool:
        return self.next_step >= self.num_steps

    @torch.no_grad()
    def step(self) -> dict:
        """Advance one step: {"step", "timestep", "latents" (x after the step), "pred_x0", "noise_pred"}."""
        if self.done:
            raise ValueError(f"this run has finished its {self.num_steps} steps")
        i, t = self.next_step, self.timesteps[self.next_step]
        noise_pred = self.pipe.guided_noise(
            self.scheduler,
            self.latents,
            t,
            self.text_context,
            self.guidance_scale,
            self.guidance_interval,
            self.codebook_snap,
            self.pred_x0 if self.self_conditioned else None,
        )
        pred_x0 = self.pred_x0 = predict_x0(self.scheduler, self.latents, noise_pred, t)
        self.latents = self.scheduler.step(noise_pred, t, self.latents, **self.extra_step_kwargs).prev_sample
        self.next_step += 1
        return {"step": i, "timestep": t, "latents": self.latents, "pred_x0": pred_x0, "noise_pred": noise_pred}

    @torch.no_grad()
    def result(self, output_type: str = "pil") -> MMGenPipelineOutput:
        return self.pipe.snap_and_decode(self.latents, output_type)
