"""PatchGAN discriminator for VQ-GAN training: every output logit judges one overlapping patch of the image.

As in pix2pix (Isola et al., 2017, https://arxiv.org/abs/1611.07004) and VQGAN (Esser et al., 2021,
https://arxiv.org/abs/2012.09841): strided 4x4 convolutions with LeakyReLU, the channels doubling per layer up
to 8x. With 3 layers each logit sees a 70x70-pixel patch. GroupNorm replaces BatchNorm: the statistics of a small
CPU batch are noisy, and GroupNorm needs no synchronisation across processes under `accelerate launch`.

    disc = PatchDiscriminator(channels=32, num_layers=3)
    out = disc(x)          # x: (B, 3, H, W) in [-1, 1]
    out.logits             # (B, 1, H/8 - 2, W/8 - 2): > 0 "looks real", < 0 "looks reconstructed"
    out.features           # the activations after each layer, for feature matching

Dimension letters: B batch, C channels, H x W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class DiscriminatorOutput(BaseOutput):
    """`features` defaults to None, as in diffusers' outputs, so that accelerate can rebuild the output from a dict
    under mixed precision (see `VQVAEOutput`); the forward always sets it."""

    logits: torch.Tensor  # (B, 1, h, w), one per patch
    features: list[torch.Tensor] = None  # (B, C_i, h_i, w_i) after each hidden layer


def _block(c_in: int, c_out: int, stride: int, norm: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.GroupNorm(min(32, c_out // 4), c_out))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """See the module docstring."""

    @register_to_config
    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        widths = [channels * min(2**i, 8) for i in range(num_layers + 1)]  # e.g. 64, 128, 256, 512
        blocks = [_block(in_channels, widths[0], 2, norm=False)]
        blocks += [_block(widths[i - 1], widths[i], 2, norm=True) for i in range(1, num_layers)]
        blocks.append(_block(widths[num_layers - 1], widths[num_layers], 1, norm=True))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(widths[num_layers], 1, 4, stride=1, padding=1)
        for m in self.modules():  # DCGAN's initialisation, as in pix2pix and VQGAN
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_dict: bool = True):
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        out = DiscriminatorOutput(self.head(x), features)
        return out if return_dict else out.to_tuple()
