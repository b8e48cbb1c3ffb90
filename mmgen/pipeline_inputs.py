"""What a pipeline call may be asked: its inputs checked before any work is done, with messages for people.

`MMGenPipeline` takes these as a mixin: `check_inputs` as diffusers' pipelines name it, the model's own sampling
settings in place of a None (`_checked_sampling`), and the image size a diffusers caller passes as `height` and
`width` (a DiT draws one latent grid, so one size).
"""

from __future__ import annotations

import numbers

from .denoising import Guidance
from .settings import check_prompt, check_sampling
from .step_cache import check_threshold


class PipelineInputs:
    """Input checks of `MMGenPipeline` (which provides `sampling_defaults`, `transformer`, `vqvae`)."""

    _callback_tensor_inputs: list[str]

    def _checked_sampling(
        self, prompt, steps, guidance_scale, interval, snap, candidates, cache, start_step, latents, tensor_inputs
    ) -> tuple[int, Guidance, int]:
        """A call's settings, a None the model's own (`sampling_defaults`), checked: (steps, Guidance, candidates)."""
        own = self.sampling_defaults
        steps = own["num_inference_steps"] if steps is None else steps
        guidance_scale = own["guidance_scale"] if guidance_scale is None else guidance_scale
        snap = own["codebook_snap"] if snap is None else snap
        candidates = own["num_candidates"] if candidates is None else candidates
        cache = check_threshold(own["first_block_cache"] if cache is None else cache)
        checked = self.check_inputs(
            prompt, steps, guidance_scale, start_step, latents, tensor_inputs, interval, snap, candidates
        )
        guidance = Guidance(checked.guidance_scale, checked.guidance_interval, checked.codebook_snap, cache)
        return checked.num_inference_steps, guidance, checked.num_candidates

    def check_inputs(
        self,
        prompt,
        num_inference_steps,
        guidance_scale,
        start_step=0,
        latents=None,
        callback_on_step_end_tensor_inputs=None,
        guidance_interval=None,
        codebook_snap=0.0,
        num_candidates: int = 1,
    ):
        """ValueError with a message for people on bad input; returns the sampling settings normalised
        (`CheckedSampling`)."""
        if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
            raise ValueError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r:.60}")
        if isinstance(prompt, str):
            check_prompt(prompt)
        for i, p in enumerate([] if isinstance(prompt, str) else prompt):
            try:
                check_prompt(p)
            except ValueError as e:
                raise ValueError(f"Prompt {i + 1} of {len(prompt)}: {e}") from None
        checked = check_sampling(num_inference_steps, guidance_scale, guidance_interval, codebook_snap, num_candidates)
        last = checked.num_inference_steps - 1
        if isinstance(start_step, bool) or not isinstance(start_step, numbers.Integral) or not 0 <= start_step <= last:
            raise ValueError(f"`start_step` must be a whole number in 0..{last}, got {start_step!r}")
        if start_step > 0 and latents is None:
            raise ValueError("starting from a later step needs the `latents` of that step")
        if start_step > 0 and getattr(self.scheduler, "order", 1) > 1:  # Heun: a step is two model calls
            raise ValueError(
                f"{type(self.scheduler).__name__} calls the model {self.scheduler.order} times a step: starting from "
                "a later step needs a sampler that calls it once (euler-ancestral, ddim, ...)"
            )
        bad = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(f"callback tensor inputs {bad} are not in {self._callback_tensor_inputs}")
        return checked

    @property
    def image_size(self) -> int:
        """The side of the square images this pipeline draws: its DiT's latent grid times the tokenizer's factor."""
        return self.transformer.config.sample_size * self.vqvae.downsample_factor

    def check_image_size(self, height, width) -> None:
        """`height` and `width` as a diffusers caller passes them: the model's own size or None; the DiT draws one
        latent grid, so any other size is refused with the size it draws."""
        side = self.image_size
        for name, value in (("height", height), ("width", width)):
            if value is not None and (isinstance(value, bool) or value != side):
                raise ValueError(
                    f"This model draws {side}x{side} images (a {self.transformer.config.sample_size}x"
                    f"{self.transformer.config.sample_size} latent grid); `{name}` must be {side} or left out, "
                    f"got {value!r}. Resize the image afterwards for another size."
                )
