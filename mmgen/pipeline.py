"""MMGenPipeline: text -> latent grid (DiT + a diffusers scheduler) -> nearest codes -> image (VQ-VAE decoder).

    pipe = MMGenPipeline.from_pretrained("assets/mmgen-base")
    out = pipe("a large red circle in the top left on a white background", generator=torch.Generator().manual_seed(0))
    out.images[0], out.tokens[0]          # a 128x128 PIL image and its exact 16x16 token grid

The sampler runs in the tokenizer's continuous code space (latents are code vectors times `scaling_factor`);
the final latent is snapped to the nearest codes, so every image has an exact token grid. Inference only:
training lives in `mmgen/training/`. The loop follows diffusers' current pipelines (`check_inputs`,
`encode_prompt`, `prepare_latents`, numbered steps, `callback_on_step_end`); one step is `mmgen.denoising`'s,
shared with the step-by-step run (`stepwise`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

from . import captioning
from .callbacks import LatentInpainter, inpaint_grids
from .candidates import best_generators
from .denoising import DenoisingRun, callback_tensor_inputs
from .export_hub import check_savable, is_export, load_export
from .latent_tokens import LatentTokens
from .model_paths import local_model_folder
from .models.dit import DiT
from .models.text_encoder import MAX_TOKENS, PROMPT_CACHE_SIZE, encode_text_cached, load_text_encoder, unread_text
from .models.vqvae import VQVAE
from .pipeline_inputs import PipelineInputs
from .settings import (
    DEFAULT_GUIDANCE_INTERVAL,
    SCHEDULER_CLASSES,
    model_sampling_defaults,
    negative_prompts,
)
from .vocabulary import VOCABULARY_FILE, Vocabulary

logger = logging.get_logger(__name__)
_WARNED_UNREAD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # text encoder -> the cut prompts it warned of

SCHEDULERS = {name: getattr(diffusers, cls) for name, cls in SCHEDULER_CLASSES.items()}  # see mmgen.settings


@dataclass
class MMGenPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    tokens: torch.Tensor  # (B, h, w) long: the exact token grid of each image


class MMGenPipeline(LatentTokens, PipelineInputs, DiffusionPipeline):
    _callback_tensor_inputs = ["latents", "noise_pred", "pred_x0", "prompt_embeds", "model_input"]

    def enable_model_cpu_offload(self, *args, **kwargs):
        raise NotImplementedError("mmgen's models take a few MB and stay on one device: use `pipe.to(device)`")

    enable_sequential_cpu_offload = enable_model_cpu_offload

    def __init__(self, vqvae: VQVAE, transformer: DiT, text_encoder, tokenizer, scheduler, sampling_defaults=None):
        """`sampling_defaults`: the settings this model samples at when a call leaves them out, where they are not
        mmgen.settings' (keys of MODEL_SAMPLING_KEYS, e.g. {"num_inference_steps": 30}); saved in model_index.json."""
        super().__init__()
        self.register_modules(
            vqvae=vqvae, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )
        try:  # a bad entry fails here, when the model loads
            model_sampling_defaults(sampling_defaults)
        except ValueError as e:
            raise ValueError(f"The model's sampling_defaults (model_index.json) are not usable: {e}") from None
        self.register_to_config(sampling_defaults=dict(sampling_defaults) if sampling_defaults else None)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """As DiffusionPipeline.from_pretrained; the text encoder and tokenizer default to the bundled MiniLM
        when the model folder does not hold them (the shipped model does not copy the 90 MB encoder)."""
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        # A shipped name or a folder; a Hub repo id is fetched whole first: diffusers' own download step filters
        # files by the library named in model_index.json, which it cannot do for our third-party `mmgen` classes.
        pretrained_model_name_or_path = local_model_folder(pretrained_model_name_or_path, **hub_kwargs)
        folder = Path(pretrained_model_name_or_path)
        if folder.is_dir() and not (folder / "model_index.json").is_file() and (folder / "vqvae").is_dir():
            raise ValueError(
                f"{folder} holds a tokenizer alone (vqvae/, no model_index.json), not a text-to-image model: "
                "publish a generator trained on it into the folder (python -m mmgen.release --generator RUN --out "
                f"{folder}), or use it where a tokenizer is asked for (mmgen encode --model {folder})"
            )
        # Weights ship in fp16; compute in float32 unless the caller asks for a dtype (or the older `torch_dtype`).
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            kwargs["dtype"] = torch.float32
        kwargs.setdefault("use_safetensors", True)  # a .bin is a pickle, which can run code when loaded
        index = cls.load_config(pretrained_model_name_or_path, **hub_kwargs)
        if is_export(index):  # written by `mmgen export-hub`: mmgen's own classes, not the folder's copy of them
            return load_export(cls, pretrained_model_name_or_path, index, kwargs)
        missing = [n for n in ("text_encoder", "tokenizer") if kwargs.get(n) is None and not any(index.get(n) or [])]
        if missing:
            defaults = load_text_encoder()._asdict()
            kwargs.update({n: defaults[n] for n in missing})
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except NotImplementedError as e:  # a scheduler config naming a schedule diffusers does not have
            raise ValueError(f"{pretrained_model_name_or_path}: {e}") from None

    def save_pretrained(self, save_directory, **kwargs):
        """diffusers' save, with the training captions' vocabulary beside the transformer (`caption` reads it)."""
        check_savable(self)
        super().save_pretrained(save_directory, **kwargs)
        if vocabulary := Vocabulary.for_pipeline(self):
            vocabulary.save(Path(save_directory) / "transformer" / VOCABULARY_FILE)

    def use_scheduler(self, name: str) -> None:
        """Swap in a scheduler by its short name (see SCHEDULERS), keeping the trained noise schedule."""
        self.scheduler = self.with_scheduler(name).scheduler

    def with_scheduler(self, name: str | None = None) -> MMGenPipeline:
        """A pipeline sharing this one's models (no copy) with its own fresh scheduler: `name`, or the current
        one's class. Schedulers keep per-run state, so concurrent runs (an app's queue) each take one."""
        if name is not None and name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
        cls = SCHEDULERS[name] if name else type(self.scheduler)
        scheduler = cls.from_config(self.scheduler.config)
        own = self.config.sampling_defaults
        pipe = type(self)(**self.components | {"scheduler": scheduler}, sampling_defaults=own)
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        pipe.set_autocast(self.autocast_dtype)
        return pipe

    @property
    def sampling_defaults(self) -> dict:
        """What a call samples at when it leaves a setting out: mmgen.settings' defaults with this model's own in
        their place (`model_sampling_defaults`: `__call__`'s six sampling keyword arguments)."""
        return model_sampling_defaults(self.config.get("sampling_defaults"))

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str],
        device,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = "",
    ):
        """Text -> (prompt_embeds (B, L, E), mask (B, L), negative_embeds, negative_mask); the negative is the
        null condition used in training (the empty prompt) unless `negative_prompt` says otherwise."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        # each cut once per text encoder: best-of-N encodes the prompt again, in a pipeline of its own
        warned = _WARNED_UNREAD.setdefault(self.text_encoder, set())
        for unread in filter(None, (unread_text(self.tokenizer, p) for p in dict.fromkeys(prompts))):
            if unread not in warned:
                logger.warning(f"the model reads {MAX_TOKENS - 2} word pieces of a prompt: {unread!r} is ignored")
                if len(warned) >= PROMPT_CACHE_SIZE:
                    warned.clear()
                warned.add(unread)

        def encode(texts):  # in the DiT's dtype: the bundled MiniLM stays float32 whatever the pipeline's
            embeds, mask = encode_text_cached(self.tokenizer, self.text_encoder, texts)
            return (
                embeds.to(device, self.transformer.dtype).repeat_interleave(num_images_per_prompt, dim=0),
                mask.to(device).repeat_interleave(num_images_per_prompt, dim=0),
            )

        embeds, mask = encode(prompts)
        neg_embeds = neg_mask = None
        if do_classifier_free_guidance:
            neg_embeds, neg_mask = encode(negative_prompts(negative_prompt, len(prompts)))
        return embeds, mask, neg_embeds, neg_mask

    def prepare_text_context(
        self,
        prompt,
        device,
        num_images_per_prompt: int,
        guidance_scale: float,
        negative_prompt: str | list[str] | None = "",
    ):
        """Prompt -> (text states, the DiT's TextContext). With guidance (> 1), the null condition's half comes
        first, so one batched pass gives both predictions; the context is computed once per run, not per step."""
        do_cfg = guidance_scale > 1.0
        embeds, mask, neg_embeds, neg_mask = self.encode_prompt(
            prompt, device, num_images_per_prompt, do_cfg, negative_prompt
        )
        if do_cfg:
            embeds, mask = torch.cat([neg_embeds, embeds]), torch.cat([neg_mask, mask])
        with self.autocast(device):
            return embeds, self.transformer.prepare_text(embeds, mask)

    def set_autocast(self, dtype: torch.dtype | None) -> None:
        """Run the transformer's matmuls in `dtype` (torch.bfloat16: ~2x faster on CPUs with AVX512-BF16 or
        AMX), or None for float32. Weights stay float32; see the benchmark and the tolerance test."""
        if dtype is not None and dtype not in (torch.bfloat16, torch.float16):  # 'bf16' failed only at the next call
            raise ValueError(f"set_autocast takes torch.bfloat16, torch.float16 or None, got {dtype!r}")
        self._autocast_dtype = dtype

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype of the transformer's matmuls under autocast (see `set_autocast`); None: float32."""
        return getattr(self, "_autocast_dtype", None)

    def autocast(self, device):
        """The autocast context the transformer runs in (a no-op without `set_autocast`)."""
        dtype = self.autocast_dtype
        return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def prepare_latents(self, batch_size, dtype, device, generator, latents=None, start_step: int = 0):
        """A run's first latents (B, C, h, w): fresh or given unit noise times the scheduler's `init_noise_sigma`
        (diffusers' pipelines scale both), or, from a later step, that step's given x_t as it is."""
        c, s = self.transformer.config.in_channels, self.transformer.config.sample_size
        shape = (batch_size, c, s, s)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif not isinstance(latents, torch.Tensor):
            raise ValueError(f"`latents` must be a torch.Tensor of shape {shape}, got {type(latents).__name__}")
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")
        elif not torch.isfinite(latents).all():
            raise ValueError("the latents hold NaN or infinite values")
        latents = latents.to(device=device, dtype=dtype)
        return latents if start_step else latents * self.scheduler.init_noise_sigma

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL,
        codebook_snap: float | None = None,
        num_candidates: int | None = None,
        first_block_cache: float | None = None,
        negative_prompt: str | list[str] | None = "",
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
    ):
        """Generate images from text.

        Args:
            prompt: one text or a list.
            num_inference_steps: sampler steps (None, as below: the model's own); too few to start near noise: refused.
            guidance_scale: classifier-free guidance weight; at most 1 disables the unconditional pass.
            guidance_interval: (low, high) training timesteps (0..999) to guide in, one conditional pass elsewhere
                (Kynkaanniemi et al., 2024, https://arxiv.org/abs/2404.07724); the default leaves t < 250 unguided
                (guided, the last steps draw small shapes too dark or pale). None: guide every step.
            codebook_snap: at every step, move the predicted clean latent this fraction of the way to its nearest
                codes before the scheduler's step (0: off, 1: onto the codes); Imagen's dynamic thresholding clips
                x0, this projects it where the final latent must land anyway.
            num_candidates: best-of-N starting noise: draw this many noises per image, run each through the first
                30 % of the steps and sample the one the model finds most likely (`mmgen/candidates.py`; 2.1x one
                noise's time at 4). 1: the generator's own noise. Ignored when `latents` are given.
            first_block_cache: skip the DiT's blocks after the first on steps where its first block's output moved
                by under this share since its last full step (`mmgen/step_cache.py`; 0.2: ~0.65x the time); 0: off.
            negative_prompt: what guidance steers from (a text, or a list of one per prompt); None: the empty one.
            num_images_per_prompt: images drawn for each prompt (a whole number from 1).
            latents: start from these (B, C, h, w) latents instead of fresh noise: unit noise for step 0 (scaled
                by the scheduler's `init_noise_sigma`, as in diffusers), or, with `start_step=k`, the x_t after
                step k - 1 of an earlier run, as it is (branch from there). A replay lands where the run did only
                with what it drew after step k - 1: a stochastic sampler's (Euler ancestral's, DDPM's) generator
                in the state it then had (with candidates, the winner's: a `stepwise` run's
                `run.extra_step_kwargs["generator"]`, as the app's Trajectory tab keeps it), and a multistep
                sampler's (DPM++, UniPC) history, which a new call starts afresh; DDIM and Euler need neither.
            start_step: index of the first step to run; the schedule is that of `num_inference_steps`.
            output_type: "pil", "np" ((B, H, W, 3)) or "pt" ((B, 3, H, W)), both in [0, 1], or "latent" (the
                final snapped latents).
            callback_on_step_end: `fn(pipe, step, timestep, callback_kwargs)` after each step; it may return a
                dict that replaces tensors (e.g. {"latents": ...}), or stop the run as in diffusers (`pipe._interrupt
                = True`: the image is what the latents are then). Tensor inputs: "latents" (after the step),
                "noise_pred" (guided, eps or v), "pred_x0", "prompt_embeds", "model_input" (x_t as the DiT read it).
            height, width: the model's own `image_size` or None (a DiT draws one latent grid).
        """
        # 1.-3. Check inputs (a setting left out is the model's own), choose each image's starting noise (with
        # candidates), encode the prompt, set the timesteps and prepare the latents
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be pil, np, pt or latent, got {output_type!r}")
        self.check_image_size(height, width)
        run = self._new_run(
            self,
            prompt,
            (num_inference_steps, guidance_scale, guidance_interval, codebook_snap, num_candidates, first_block_cache),
            negative_prompt,
            num_images_per_prompt,
            generator,
            latents,
            start_step,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )

        self._interrupt = False  # a step callback may set it, as diffusers' pipelines read it
        with self.progress_bar(total=run.num_steps - start_step) as bar:  # 4. Denoising loop: one shared step
            while not run.done and not self.interrupt:
                run.step()
                bar.update()

        # 5. Snap to the nearest codes and decode
        output = run.result(output_type)
        self.maybe_free_model_hooks()
        return output if return_dict else (output.images, output.tokens)

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
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL,
        codebook_snap: float | None = None,
        num_candidates: int | None = None,
        first_block_cache: float | None = None,
        negative_prompt: str | list[str] | None = "",
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> DenoisingRun:
        """The same sampling as `__call__`, advanced one step per `run.step()` call: for live previews and a
        "next step" button. The run owns a fresh copy of the scheduler, so runs never disturb each other. With
        `num_candidates` > 1 the starting noise is chosen first, as `__call__` chooses it, and the run is the
        winner's ordinary run (it lands where `__call__` does). Its arguments are `__call__`'s in the same order,
        without `num_images_per_prompt`, `output_type` and `return_dict` (`run.result(output_type)` decodes)."""
        self.check_image_size(height, width)
        settings = num_inference_steps, guidance_scale, guidance_interval, codebook_snap, num_candidates
        return self._new_run(
            self.with_scheduler(),
            prompt,
            (*settings, first_block_cache),
            negative_prompt,
            1,
            generator,
            latents,
            start_step,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )

    def _new_run(
        self,
        run_pipe,
        prompt,
        sampling: tuple,
        negative_prompt,
        num_images_per_prompt: int,
        generator,
        latents,
        start_step: int,
        callback,
        callback_inputs,
    ) -> DenoisingRun:
        """A run on `run_pipe`'s scheduler: `sampling` (steps, guidance scale, guidance interval, codebook snap,
        candidates, first-block cache; a None the model's own) checked, and with candidates each image's starting
        noise chosen first (best-of-N: a run of their own through the first steps)."""
        steps, guidance, candidates = self._checked_sampling(
            prompt, *sampling, start_step, latents, callback_tensor_inputs(callback, callback_inputs)
        )
        if candidates > 1 and latents is None:
            generator = best_generators(
                self, prompt, num_images_per_prompt, candidates, steps, guidance, negative_prompt, generator
            )
        return DenoisingRun(
            run_pipe,
            prompt,
            guidance,
            steps,
            generator,
            latents,
            start_step,
            negative_prompt,
            num_images_per_prompt,
            callback,
            callback_inputs,
        )

    @torch.no_grad()
    def inpaint(
        self, prompt: str, tokens: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None, **kwargs
    ) -> MMGenPipelineOutput:
        """Repaint the cells of a token grid `tokens` (h, w) where `mask` (h, w) is True under `prompt`; every
        other cell keeps its code exactly (`LatentInpainter`: RePaint in the latent space). Other keyword
        arguments go to `__call__`, but for `num_candidates`: one starting noise, as best-of-N would choose it by a
        run that keeps none of the cells. The grid must be the generator's own size."""
        grid = self.transformer.config.sample_size, self.vqvae.downsample_factor, self._execution_device
        tokens, mask = inpaint_grids(tokens, mask, *grid)
        if isinstance(generator, list) or kwargs.get("callback_on_step_end_tensor_inputs") is not None:
            raise ValueError("inpaint takes one torch.Generator; its callback_on_step_end is handed the latents alone")
        if kwargs.pop("num_candidates", None) not in (None, 1):
            raise ValueError("inpaint draws one starting noise: best-of-N (num_candidates) chooses by whole scenes")
        known = self.vqvae.quantizer.indices_to_codes(tokens[None]) * self.scaling_factor  # (1, C, h, w)
        inpainter = LatentInpainter(known, mask, generator, then=kwargs.pop("callback_on_step_end", None))
        kwargs.update(callback_on_step_end=inpainter, callback_on_step_end_tensor_inputs=inpainter.tensor_inputs)
        return self(prompt, generator=generator, num_candidates=1, **kwargs)

    def rank_captions(self, image, captions: list[str]) -> list[tuple[str, float]]:
        """[(caption, denoising error)] best first: how well the DiT explains `image` under each caption."""
        return captioning.rank_captions(self, image, captions)

    def caption(self, image) -> str:
        """The best caption the model can give `image`: a search of its caption grammar, or its vocabulary ranked."""
        return captioning.caption(self, image)

    @property
    def interrupt(self) -> bool:
        """Set by a step callback (`pipe._interrupt = True`) to end a `__call__` after that step, as in diffusers."""
        return getattr(self, "_interrupt", False)

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def num_timesteps(self):
        return self._num_timesteps
