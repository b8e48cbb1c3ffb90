"""The pipeline's moves between the DiT's latents and the tokenizer's token grids (a mixin of `MMGenPipeline`).

Latents are code vectors times the DiT's `scaling_factor` (unit variance for the diffusion); tokens are the codes'
ids. Snapping a latent to its nearest codes and decoding their ids is how every image ends.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch


class LatentTokens:
    """Needs `self.vqvae` (an mmgen VQVAE) and `self.transformer` (the DiT, whose config holds the scale)."""

    @property
    def scaling_factor(self) -> float:
        return self.transformer.config.scaling_factor

    def latents_to_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> nearest code ids (B, h, w)."""
        return self.vqvae.quantizer.eval()(latents.float() / self.scaling_factor).indices  # float32: see `lookup`

    def tokens_to_latents(self, tokens: torch.Tensor) -> torch.Tensor:
        """Code ids (B, h, w) -> their scaled code vectors (B, C, h, w)."""
        return self.vqvae.quantizer.indices_to_codes(tokens) * self.scaling_factor

    def snap_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> the scaled code vectors of their nearest codes (same shape)."""
        return self.tokens_to_latents(self.latents_to_tokens(latents)).to(latents.dtype)

    def decode_tokens(self, tokens: torch.Tensor, output_type: str = "pil"):
        """Code ids (B, h, w) -> images: PIL, "np" ((B, H, W, 3) floats) or "pt" ((B, 3, H, W) floats), both in
        [0, 1] as diffusers' pipelines return them."""
        images = self.vqvae.decode_indices(tokens)  # (B, 3, H, W) in [-1, 1]
        if output_type == "pt":
            return ((images + 1) / 2).clamp(0, 1)
        arr = ((images.float() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        return [PIL.Image.fromarray(a) for a in arr] if output_type == "pil" else arr.astype(np.float32) / 255
