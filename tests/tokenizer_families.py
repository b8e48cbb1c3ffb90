"""Tiny random diffusers `VQModel`s with the structure of each public VQ tokenizer family, for offline tests.

Each keeps its family's structural flags (downsampling factor, attention blocks, spatial norm, codebook lookup)
and shrinks channels and codes. A random VQModel's codebook is uniform in +-1/K, far from every encoder output,
so all tokens would pick the same code; `make_family` re-draws the codebook from encoder outputs so that tokens
of an image differ, as they do in a trained tokenizer.
"""

from __future__ import annotations

import torch
from diffusers import VQModel

DOWN, ATTN_DOWN = "DownEncoderBlock2D", "AttnDownEncoderBlock2D"
UP, ATTN_UP = "UpDecoderBlock2D", "AttnUpDecoderBlock2D"
SMALL = dict(layers_per_block=1, norm_num_groups=4)

FAMILIES = {
    # aMUSEd's VQGAN (open-muse): f16, 8,192 codes, ids looked up in the codebook, no mid-block attention.
    "amused": dict(
        block_out_channels=(8,) * 5,
        down_block_types=(DOWN,) * 5,
        up_block_types=(UP,) * 5,
        latent_channels=8,
        num_vq_embeddings=64,
        lookup_from_codebook=True,
        mid_block_add_attention=False,
        **SMALL,
    ),
    # VQ-Diffusion's VQ-VAE: f8, 4,096 codes, attention at the lowest resolution.
    "vq-diffusion": dict(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=(DOWN, DOWN, DOWN, ATTN_DOWN),
        up_block_types=(ATTN_UP, UP, UP, UP),
        latent_channels=8,
        num_vq_embeddings=48,
        **SMALL,
    ),
    # Kandinsky's MoVQ: f8, 16,384 codes of 4 dims, spatially-normalised decoder (reads the codes). Its
    # SpatialNorm fixes 32 groups, so 32 channels is the least width.
    "movq": dict(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=(DOWN, DOWN, DOWN, ATTN_DOWN),
        up_block_types=(ATTN_UP, UP, UP, UP),
        latent_channels=4,
        vq_embed_dim=4,
        num_vq_embeddings=96,
        norm_type="spatial",
        **SMALL,
    ),
    # The LDM VQ-f4 autoencoders: f4, 3-channel latents.
    "ldm-f4": dict(
        block_out_channels=(8, 8, 8),
        down_block_types=(DOWN,) * 3,
        up_block_types=(UP,) * 3,
        latent_channels=3,
        num_vq_embeddings=32,
        **SMALL,
    ),
}
FACTORS = {"amused": 16, "vq-diffusion": 8, "movq": 8, "ldm-f4": 4}


def make_family(family: str, seed: int = 0, **overrides) -> VQModel:
    torch.manual_seed(seed)
    vq = VQModel(**{**FAMILIES[family], **overrides}).eval()
    with torch.no_grad():
        h = vq.encode(torch.rand(4, 3, 64, 64) * 2 - 1).latents  # (4, D, h, w)
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        picks = flat[torch.randint(0, flat.shape[0], (vq.config.num_vq_embeddings,))]
        vq.quantize.embedding.weight.copy_(picks + 0.05 * flat.std() * torch.randn_like(picks))
    return vq
