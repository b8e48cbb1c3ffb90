"""DiT: a diffusion transformer over the tokenizer's latent grid, conditioned on text.

Follows "Scalable Diffusion Models with Transformers" (Peebles & Xie, 2023, https://arxiv.org/abs/2212.09748):
patchify the latent grid, add fixed 2-D sin-cos positions, and condition every block with adaLN-Zero on the
timestep embedding plus the pooled text embedding. As in PixArt-alpha (Chen et al., 2023,
https://arxiv.org/abs/2310.00426), each block also cross-attends to the text encoder's token states, so
attributes bound to words ("red" with "circle") can reach the right place. The output projection and every
adaLN gate start at zero, so an untrained DiT predicts exactly zero and each block starts as the identity.

Cross-attention by itself treats the text as a set of states. With `text_refiner_layers > 0`, a few trainable
transformer layers with learned positions run over the frozen encoder's states first (like HunyuanVideo's token
refiner and Lumina-Image 2.0's context refiner), so each word's state can carry which object it describes: in
"a red circle to the left of a blue square", "red" belongs to the circle and the circle goes on the left.
They run once per prompt at sampling time, inside `prepare_text`. (Joint MM-DiT attention and
self-conditioning were tried here and lost: `docs/training-notes.md`.)

What the model predicts is the scheduler's `prediction_type`; the shipped model predicts v = sqrt(a) eps -
sqrt(1 - a) x0 (Salimans & Ho, 2022, https://arxiv.org/abs/2202.00512). Both targets have unit scale at
every timestep with the latents scaled to unit variance, but at high noise an epsilon model's x0 estimate
divides its error by sqrt(a), while v stays well conditioned at both ends. Measured here (5 minutes of
training each, same everything else, held-out x0 error at t = 150..850): 0.072 with v, 0.093 with epsilon.
Every diffusers scheduler accepts either.

Dimension letters: B batch, C latent channels (code dim), H x W latent grid, p patch size, T = (H/p)(W/p)
image tokens, D model width, L text tokens, E text-encoder width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from ..model_paths import ShippedNames
from ..step_cache import FirstBlockCache

PATCH_SIZE = 2  # latent cells per patch side, unless a preset says otherwise ("S/2": 2)
DIT_PRESETS = {
    "tiny": dict(hidden_size=32, depth=2, num_heads=2),  # unit tests
    "XS/2": dict(hidden_size=192, depth=6, num_heads=3),  # mmgen-base-64 and mmgen-base (+ 2 text refiner layers)
    "S/2": dict(hidden_size=256, depth=8, num_heads=4),
    "B/2": dict(hidden_size=384, depth=12, num_heads=6),  # a step up, for a GPU
}


@dataclass
class DiTOutput(BaseOutput):
    sample: torch.Tensor  # (B, C, H, W) the prediction: epsilon or v (see the module docstring)


@dataclass
class TextContext:
    """The text's contribution to every step, computed once per prompt by `DiT.prepare_text`."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: cross-attention keys, values (B, nh, L, D/nh)
    pooled: torch.Tensor  # (B, D) pooled text, projected; added to the timestep embedding
    mask: torch.Tensor | None  # (B, L) bool, True = a real token

    def rows(self, rows: slice | torch.Tensor) -> TextContext:
        """The context of part of the batch, e.g. the conditional half of a guidance batch."""
        mask = None if self.mask is None else self.mask[rows]
        return TextContext(kv=[(k[rows], v[rows]) for k, v in self.kv], pooled=self.pooled[rows], mask=mask)


def sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE / DiT): (h*w, dim), half the channels per axis."""
    if dim % 4:
        raise ValueError(f"position embedding width must be divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (dim/4,)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord[:, None] * freqs[None]  # (h*w, dim/4)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()  # (h*w, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # x: (B, T, D), shift/scale: (B, D)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`F.scaled_dot_product_attention`, kept in float32 on CPU when training under bf16/fp16 autocast.

    Autocast sends attention to bf16, but PyTorch's CPU flash kernel is slower in bf16 than in float32 at this
    model's sizes in the backward pass (2x to 5x per call, timed alone), where it took 45 % of a compiled training
    step (`benchmarks/bench.py`, "train" section, times a whole step each way). So when gradients are on, on CPU,
    q, k, v are upcast and the result cast back; the matmuls around it stay in bf16. Sampling (no gradients) keeps
    the bf16 kernel, faster there for the forward pass alone, and a GPU's bf16 kernel runs as is."""
    if q.device.type != "cpu" or q.dtype == torch.float32 or not torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask).to(q.dtype)


class Attention(nn.Module):
    """Multi-head attention on scaled_dot_product_attention (`attention`); self-attention when `context` is None."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)  # keys and values in one matmul
        self.out = nn.Linear(dim, dim)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, E) -> keys and values (B, nh, L, D/nh). For text, computed once per prompt (see TextContext)."""
        k, v = rearrange(self.kv(context), "b l (two h d) -> two b h l d", two=2, h=self.num_heads)
        return k, v

    def forward(self, x, context=None, mask=None, kv=None):
        """x (B, T, D) attends to `context` (B, L, E), to itself when None, or to precomputed keys and values
        `kv`; `mask` (B, L) bool, True = attend. Returns (B, T, D)."""
        q = rearrange(self.q(x), "b t (h d) -> b h t d", h=self.num_heads)  # (B, nh, T, D/nh)
        k, v = kv if kv is not None else self.keys_values(x if context is None else context)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L) True = attend
        y = attention(q, k, v, attn_mask)
        return self.out(rearrange(y, "b h t d -> b t (h d)"))


class TextRefinerBlock(nn.Module):
    """A pre-norm transformer layer over the text tokens alone (self-attention that skips padding, then MLP)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, text, mask):
        text = text + self.attn(self.norm1(text), mask=mask)
        return text + self.mlp(self.norm2(text))


class DiTBlock(nn.Module):
    """Self-attention, cross-attention to text, MLP; adaLN-Zero modulation from the conditioning vector."""

    def __init__(self, dim: int, num_heads: int, text_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)  # cross-attention is not modulated (as in PixArt)
        self.cross = Attention(dim, num_heads, context_dim=text_dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # shift, scale, gate for attn and mlp

    def forward(self, x, c, text_kv, text_mask):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # each (B, D)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + self.cross(self.norm2(x), mask=text_mask, kv=text_kv)
        return x + gate2[:, None] * self.mlp(modulate(self.norm3(x), shift2, scale2))


class DiT(ShippedNames, ModelMixin, ConfigMixin):
    """Text-conditioned diffusion transformer over a (C, H, W) latent grid; predicts epsilon or v.

    `scaling_factor` is the factor that brings the tokenizer's code vectors to unit variance (measured on the
    training latents); the pipeline multiplies codes by it before diffusion and divides after.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 16,
        in_channels: int = 8,
        patch_size: int = PATCH_SIZE,
        hidden_size: int = 256,
        depth: int = 8,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        text_dim: int = 384,
        scaling_factor: float = 1.0,
        text_refiner_layers: int = 0,
        max_text_tokens: int = 32,
    ):
        super().__init__()
        if isinstance(scaling_factor, bool) or not isinstance(scaling_factor, int | float) or not scaling_factor > 0:
            raise ValueError(f"a DiT's scaling_factor is a number above 0, got {scaling_factor!r}")
        if not isinstance(num_heads, int) or num_heads < 1 or hidden_size % num_heads:
            raise ValueError(f"a DiT's hidden_size {hidden_size!r} must split into num_heads {num_heads!r} heads")
        if sample_size < patch_size or sample_size % patch_size:
            raise ValueError(
                f"a {sample_size}x{sample_size} latent grid does not split into {patch_size}x{patch_size} patches"
            )
        self.patch_embed = nn.Linear(in_channels * patch_size**2, hidden_size)
        grid = sample_size // patch_size
        self.register_buffer("pos_embed", sincos_2d(hidden_size, grid, grid), persistent=False)  # (T, D)
        self.t_embed = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.text_pool = nn.Sequential(
            nn.Linear(text_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        # The frozen encoder's token states reach cross-attention through a trainable adapter: a linear map, or
        # (text_refiner_layers > 0) a projection to the model width, learned positions and a few transformer
        # layers over the text, so each word's state can say which object of the prompt it belongs to.
        text_width = hidden_size if text_refiner_layers else text_dim
        self.text_proj = nn.Linear(text_dim, text_width)
        if text_refiner_layers:
            self.text_pos = nn.Parameter(torch.zeros(max_text_tokens, text_width))  # (L, D)
            self.text_refiner = nn.ModuleList(
                [TextRefinerBlock(text_width, num_heads, mlp_ratio) for _ in range(text_refiner_layers)]
            )
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, text_width, mlp_ratio) for _ in range(depth)])
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.proj_out = nn.Linear(hidden_size, in_channels * patch_size**2)
        self.initialize_weights()

    def initialize_weights(self):
        """Xavier for linear layers; adaLN modulations and the output projection zeroed (adaLN-Zero, DiT sec. 3)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        if hasattr(self, "text_pos"):
            nn.init.normal_(self.text_pos, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
            nn.init.zeros_(block.cross.out.weight)  # cross-attention also starts as a no-op
        for layer in (self.ada_out[-1], self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def prepare_text(self, encoder_hidden_states: torch.Tensor, encoder_attention_mask=None) -> TextContext:
        """Everything the model derives from the text alone: per-block cross-attention keys and values, and
        the pooled text vector. A sampler computes it once per prompt instead of once per step."""
        mask = None if encoder_attention_mask is None else encoder_attention_mask.bool()  # (B, L)
        text = self.text_proj(encoder_hidden_states)  # (B, L, E), or (B, L, D) with a refiner
        if hasattr(self, "text_pos"):
            L = text.shape[1]
            if L > self.config.max_text_tokens:
                raise ValueError(f"at most {self.config.max_text_tokens} text tokens, got {L}")
            text = text + self.text_pos[:L]
            for layer in self.text_refiner:
                text = layer(text, mask)
        if mask is None:
            pooled = encoder_hidden_states.mean(dim=1)
        else:
            weights = mask.to(text.dtype)[..., None]
            pooled = (encoder_hidden_states * weights).sum(1) / weights.sum(1).clamp_min(1)  # (B, E)
        kv = [block.cross.keys_values(text) for block in self.blocks]
        return TextContext(kv=kv, pooled=self.text_pool(pooled), mask=mask)

    def run_blocks(self, x, c, text_context: TextContext, step_cache: FirstBlockCache | None = None):
        """x (R, T, D) through every block; with a `step_cache`, the rows it lets skip the blocks after the first
        take the residual those added at the rows' last full step instead. c: (R, D) the conditioning vector."""
        first = self.blocks[0](x, c, text_context.kv[0], text_context.mask)
        if step_cache is None:
            return self.later_blocks(first, c, text_context)
        head = first - x
        rows = step_cache.rows_to_run(head)  # (n,)
        if len(rows) == len(x):  # every row runs: no gathering
            out = self.later_blocks(first, c, text_context)
            step_cache.store(rows, head, first, out)
            return out
        out = step_cache.reused(first)
        if len(rows):
            ran = self.later_blocks(first[rows], c[rows], text_context.rows(rows))  # (n, T, D)
            step_cache.store(rows, head, first, ran)
            out = out.index_copy(0, rows, ran)
        return out

    def later_blocks(self, x, c, text_context: TextContext):
        """x (R, T, D) through every block but the first (text keys and values: computed once per prompt)."""
        for block, kv in zip(self.blocks[1:], text_context.kv[1:]):
            x = block(x, c, kv, text_context.mask)
        return x

    def forward(
        self,
        sample,
        timestep,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        text_context: TextContext | None = None,
        return_dict=True,
        step_cache: FirstBlockCache | None = None,
    ):
        """sample (B, C, H, W), timestep (B,) or scalar, encoder_hidden_states (B, L, E), mask (B, L) of 1/0;
        or, instead of the last two, `text_context` from `prepare_text` (same result, less work per step).
        `step_cache`: a sampling run's `FirstBlockCache`, which may skip the blocks after the first."""
        B, C, H, W = sample.shape
        p = self.config.patch_size
        if H != self.config.sample_size or W != self.config.sample_size:
            raise ValueError(
                f"expected a {self.config.sample_size}x{self.config.sample_size} latent grid, got {W}x{H}"
            )
        if text_context is None:
            if encoder_hidden_states is None:
                raise ValueError("pass encoder_hidden_states (text encoder states) or a text_context")
            text_context = self.prepare_text(encoder_hidden_states, encoder_attention_mask)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(B)

        x = rearrange(sample, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)  # (B, T, p*p*C)
        x = self.patch_embed(x) + self.pos_embed.to(x.dtype)  # (B, T, D); a buffer not saved: float32 at load
        t_freq = get_timestep_embedding(timestep, 256, flip_sin_to_cos=True, downscale_freq_shift=0)  # (B, 256), DiT's
        c = self.t_embed(t_freq.to(x.dtype)) + text_context.pooled  # (B, D)
        x = self.run_blocks(x, c, text_context, step_cache)
        shift, scale = self.ada_out(c).chunk(2, dim=1)
        x = self.proj_out(modulate(self.norm_out(x), shift, scale))  # (B, T, p*p*C)
        out = rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=H // p, p=p, q=p)
        if not return_dict:
            return (out,)
        return DiTOutput(out)
