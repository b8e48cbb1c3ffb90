"""VQ-VAE image tokenizer: a fully convolutional encoder, a vector quantizer and a decoder.

Follows VQ-VAE (van den Oord et al., 2017, https://arxiv.org/abs/1711.00937) with the ResNet blocks of
VQGAN (Esser et al., 2021, https://arxiv.org/abs/2012.09841), kept small enough to train and run on a CPU.
An image of H x W pixels becomes an (H/f) x (W/f) grid of integer tokens, f = 2 ** (len(block_channels) - 1):
with the default f = 4, a 64x64 scene gives 16x16 tokens and a 256x256 photo 64x64.

    vq = VQVAE.from_pretrained("assets/mmgen-base", subfolder="vqvae")
    enc = vq.encode(x)               # x: (B, 3, H, W) in [-1, 1]
    enc.latents, enc.indices         # (B, D, H/f, W/f) codes, (B, H/f, W/f) long
    vq.decode_indices(enc.indices)   # (B, 3, H, W) in [-1, 1]

Dimension letters: B batch, C channels, H x W pixels (or token grid), D code dim, K codebook size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..images import check_pixels
from ..model_paths import ShippedNames
from .quantizer import VectorQuantizer

VQVAE_PRESETS = {
    # A unit test's model: trains a step in milliseconds.
    "tiny": dict(
        block_channels=(8, 16, 16), encoder_layers=(0, 1, 1), decoder_layers=(0, 1, 1), num_codes=64, code_dim=4
    ),
    # f4, the shipped VQ-VAE: sized for ~30 min of training and ~100 ms per 256x256 image on 2 CPU cores.
    "base": dict(
        block_channels=(32, 64, 128), encoder_layers=(0, 1, 2), decoder_layers=(1, 1, 2), num_codes=512, code_dim=8
    ),
    # f8 and f16 (VQ-GAN): a level more per factor of 2, the same 16x16 grid from 128 or 256 pixels; a token
    # holds 4x or 16x the pixels of an f4 token, so the codebook is larger.
    "f8": dict(
        block_channels=(32, 64, 128, 128),
        encoder_layers=(0, 1, 1, 2),
        decoder_layers=(1, 1, 1, 2),
        num_codes=1024,
        code_dim=8,
    ),
    "f16": dict(
        block_channels=(32, 64, 128, 128, 256),
        encoder_layers=(0, 1, 1, 1, 2),
        decoder_layers=(1, 1, 1, 1, 2),
        num_codes=1024,  # 2,048 left a quarter of the codes unseen on held-out images: docs/tokenizer-runs.md
        code_dim=8,
    ),
}


@dataclass
class VQVAEEncoderOutput(BaseOutput):
    latents: torch.Tensor  # (B, D, h, w) quantised code vectors
    indices: torch.Tensor  # (B, h, w) long token ids


@dataclass
class VQVAEOutput(BaseOutput):
    """The training forward's output. The fields after the first default to None, as diffusers' own outputs' do:
    under mixed precision accelerate rebuilds the output from a dict (`VQVAEOutput({...})`), which BaseOutput
    unpacks only when the other fields may be left out. The forward always sets every field."""

    sample: torch.Tensor  # (B, 3, H, W) reconstruction
    indices: torch.Tensor = None  # (B, h, w) long
    recon_loss: torch.Tensor = None  # scalar
    commit_loss: torch.Tensor = None  # scalar
    perplexity: torch.Tensor = None  # scalar


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.block(x)


class Encoder(nn.Module):
    """(B, 3, H, W) -> (B, D, H/f, W/f) unnormalised code vectors."""

    def __init__(self, in_channels, block_channels, layers, code_dim):
        super().__init__()
        blocks = [nn.Conv2d(in_channels, block_channels[0], 3, padding=1)]
        for i, (ch, n) in enumerate(zip(block_channels, layers)):
            blocks += [ResBlock(ch) for _ in range(n)]
            if i + 1 < len(block_channels):  # strided conv halves the resolution
                blocks.append(nn.Conv2d(ch, block_channels[i + 1], 3, stride=2, padding=1))
        blocks += [_norm(block_channels[-1]), nn.SiLU(), nn.Conv2d(block_channels[-1], code_dim, 1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """(B, D, h, w) codes -> (B, 3, h*f, w*f) image."""

    def __init__(self, out_channels, block_channels, layers, code_dim):
        super().__init__()
        chs = block_channels[::-1]
        blocks = [nn.Conv2d(code_dim, chs[0], 3, padding=1)]
        for i, (ch, n) in enumerate(zip(chs, layers[::-1])):
            blocks += [ResBlock(ch) for _ in range(n)]
            if i + 1 < len(chs):  # nearest upsampling then conv: no checkerboard artefacts of transposed convs
                blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, chs[i + 1], 3, padding=1)]
        blocks += [_norm(chs[-1]), nn.SiLU(), nn.Conv2d(chs[-1], out_channels, 3, padding=1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, z):
        return self.net(z)


class VQVAE(ShippedNames, ModelMixin, ConfigMixin):
    """Image tokenizer. See the module docstring for the public API."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_channels: tuple[int, ...] = (32, 64, 128),
        encoder_layers: tuple[int, ...] = (0, 1, 2),
        decoder_layers: tuple[int, ...] = (1, 1, 2),
        num_codes: int = 512,
        code_dim: int = 8,
        commitment_weight: float = 0.25,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 0.5,
    ):
        super().__init__()
        if not (len(block_channels) == len(encoder_layers) == len(decoder_layers)):
            raise ValueError("block_channels, encoder_layers and decoder_layers need one entry per resolution level")
        self.encoder = Encoder(in_channels, block_channels, encoder_layers, code_dim)
        self.quantizer = VectorQuantizer(num_codes, code_dim, ema_decay, commitment_weight, dead_code_threshold)
        self.decoder = Decoder(in_channels, block_channels, decoder_layers, code_dim)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_channels) - 1)

    @property
    def codebook_fingerprint(self) -> str:
        """A short hash of the codebook at float16 precision. A generator's latents are these vectors, so a DiT
        fits the tokenizers with its codebook's fingerprint: a fine-tuned decoder or fp16 publishing keeps it."""
        codes = self.quantizer.codebook.detach().to("cpu", torch.float16).contiguous()
        return hashlib.sha256(codes.numpy().tobytes()).hexdigest()[:16]

    def _check_image(self, x: torch.Tensor) -> None:
        f = self.downsample_factor
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"expected float images (B, 3, H, W) in [-1, 1], got {got} (from a PIL image: pil_to_tensor)"
            )
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images of shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"image height and width must be divisible by {f}, got {tuple(x.shape[-2:])}")

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """Images (B, 3, H, W) in [-1, 1] -> quantised latents (B, D, H/f, W/f) and indices (B, H/f, W/f)."""
        self._check_image(x)
        check_pixels(x)  # here, not in the training forward: its data loader makes only valid pixels
        q = self.quantizer(self.encoder(x.to(self.dtype)))
        return VQVAEEncoderOutput(q.latents, q.indices) if return_dict else (q.latents, q.indices)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, h, w) -> images (B, 3, h*f, w*f) clamped to [-1, 1]."""
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[1] != self.config.code_dim:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"expected code vectors of shape (B, {self.config.code_dim}, h, w), got {got}")
        return self.decoder(latents.to(self.dtype)).clamp(-1, 1)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, h, w) -> images (B, 3, h*f, w*f) in [-1, 1]."""
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.is_complex():
            got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"token ids must be an integer tensor (B, h, w), got {got}")
        return self.decode(self.quantizer.indices_to_codes(indices.long()))

    def forward(self, x: torch.Tensor, return_dict: bool = True):
        """Training forward: reconstruction (unclamped) and the loss terms."""
        self._check_image(x)
        q = self.quantizer(self.encoder(x))
        sample = self.decoder(q.latents)
        recon_loss = F.mse_loss(sample, x)
        out = VQVAEOutput(sample, q.indices, recon_loss, q.commit_loss, q.perplexity)
        return out if return_dict else out.to_tuple()
