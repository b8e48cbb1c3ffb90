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
They run once per prompt at sampling time, inside `prepare_text`.

With `joint_attention=True` the blocks are MM-DiT blocks (Esser et al., 2024, "Scaling Rectified Flow
Transformers for High-Resolution Image Synthesis", https://arxiv.org/abs/2403.03206) in place of
cross-attention: text and image tokens keep separate weights (adaLN modulation, projections, MLP) but attend
together in one attention, so the text states are updated by the image in every block. A word such as
"circle" can then find the blob it is drawn in, and the blob can read which word is its own: the binding that
two-object prompts need. The text then changes with each step, so only the refiner runs once per prompt.

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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

DIT_PRESETS = {
    "tiny": dict(hidden_size=32, depth=2, num_heads=2),  # unit tests
    "XS/2": dict(hidden_size=192, depth=6, num_heads=3),  # shipped (+ 2 text-refiner layers): 13k steps, ~62 min
    "S/2": dict(hidden_size=256, depth=8, num_heads=4),
    "B/2": dict(hidden_size=384, depth=12, num_heads=6),  # a step up, for a GPU
}


@dataclass
class DiTOutput(BaseOutput):
    sample: torch.Tensor  # (B, C, H, W) the prediction: epsilon or v (see the module docstring)
    # (B, T, L) with return_cross_attention: the attention each image token pays to each text token, averaged
    # over heads and blocks (rows sum to 1 over the real tokens); what a grounding loss reads
    cross_attention: torch.Tensor | None = None


@dataclass
class TextContext:
    """The text's contribution to every step, computed once per prompt by `DiT.prepare_text`."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: cross-attention keys, values (B, nh, L, D/nh)
    pooled: torch.Tensor  # (B, D) pooled text, projected; added to the timestep embedding
    mask: torch.Tensor | None  # (B, L) bool, True = a real token
    states: torch.Tensor | None = None  # (B, L, D) the text stream's input (joint attention; kv is then empty)

    def rows(self, rows: slice) -> TextContext:
        """The context of part of the batch, e.g. the conditional half of a guidance batch."""
        mask = None if self.mask is None else self.mask[rows]
        states = None if self.states is None else self.states[rows]
        return TextContext(
            kv=[(k[rows], v[rows]) for k, v in self.kv], pooled=self.pooled[rows], mask=mask, states=states
        )


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


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


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

    def forward(self, x, context=None, mask=None, kv=None, return_probs: bool = False):
        """(B, T, D), or with `return_probs` also the attention weights averaged over heads (B, T, L)."""
        q = rearrange(self.q(x), "b t (h d) -> b h t d", h=self.num_heads)  # (B, nh, T, D/nh)
        k, v = kv if kv is not None else self.keys_values(x if context is None else context)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L) True = attend
        y = attention(q, k, v, attn_mask)
        out = self.out(rearrange(y, "b h t d -> b t (h d)"))
        if not return_probs:
            return out
        # the fused kernel keeps its weights to itself: recompute them (T x L per head, cheap beside the rest)
        logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, nh, T, L)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        return out, logits.softmax(dim=-1).mean(dim=1)


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

    def forward(self, x, c, text_kv, text_mask, return_attention: bool = False):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # each (B, D)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        cross = self.cross(self.norm2(x), mask=text_mask, kv=text_kv, return_probs=return_attention)
        cross, probs = cross if return_attention else (cross, None)
        x = x + cross
        x = x + gate2[:, None] * self.mlp(modulate(self.norm3(x), shift2, scale2))
        return (x, probs) if return_attention else x


class JointBlock(nn.Module):
    """An MM-DiT block: image tokens x and text tokens each get their own adaLN-Zero modulation, projections and
    MLP, and attend together in one attention over the concatenated sequence (padding keys hidden). The last
    block only lends the text as keys and values: its text output would never be read (as in SD3)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, last: bool = False):
        super().__init__()
        self.num_heads, self.last = num_heads, last
        hidden = int(dim * mlp_ratio)
        streams = ("x",) if last else ("x", "text")
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.ModuleDict({"x": nn.Linear(dim, 3 * dim), "text": nn.Linear(dim, 3 * dim)})
        self.out = nn.ModuleDict({s: nn.Linear(dim, dim) for s in streams})
        self.mlp = nn.ModuleDict(
            {
                s: nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
                for s in streams
            }
        )
        # shift, scale, gate for attention and for the MLP, per stream; the last block's text needs shift, scale only
        self.n_text_mod = 2 if last else 6
        self.ada = nn.ModuleDict(
            {
                "x": nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim)),
                "text": nn.Sequential(nn.SiLU(), nn.Linear(dim, self.n_text_mod * dim)),
            }
        )

    def forward(self, x, text, c, text_mask):
        T = x.shape[1]
        mod = {"x": self.ada["x"](c).chunk(6, dim=1), "text": self.ada["text"](c).chunk(self.n_text_mod, dim=1)}
        qkv = torch.cat(
            [self.qkv[s](modulate(self.norm1(h), *mod[s][:2])) for s, h in (("x", x), ("text", text))], dim=1
        )
        q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads)  # (B, nh, T+L, d)
        attn_mask = None
        if text_mask is not None:  # image keys always visible, text padding never
            keys = torch.cat([text_mask.new_ones(text_mask.shape[0], T), text_mask], dim=1)  # (B, T+L)
            attn_mask = keys[:, None, None, :]
        y = rearrange(attention(q, k, v, attn_mask), "b h n d -> b n (h d)")
        outputs = []
        for s, h, y_s in (("x", x, y[:, :T]), ("text", text, y[:, T:]))[: 1 if self.last else 2]:
            _, _, gate1, shift2, scale2, gate2 = mod[s]
            h = h + gate1[:, None] * self.out[s](y_s)
            outputs.append(h + gate2[:, None] * self.mlp[s](modulate(self.norm2(h), shift2, scale2)))
        return outputs[0], (text if self.last else outputs[1])


class DiT(ModelMixin, ConfigMixin):
    """Text-conditioned diffusion transformer over a (C, H, W) latent grid; predicts epsilon or v.

    `scaling_factor` is the factor that brings the tokenizer's code vectors to unit variance (measured on the
    training latents); the pipeline multiplies codes by it before diffusion and divides after.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 16,
        in_channels: int = 8,
        patch_size: int = 2,
        hidden_size: int = 256,
        depth: int = 8,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        text_dim: int = 384,
        scaling_factor: float = 1.0,
        text_refiner_layers: int = 0,
        max_text_tokens: int = 32,
        joint_attention: bool = False,
        self_condition: bool = False,
    ):
        super().__init__()
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
        # With joint attention the text is a second stream of width D through every block (positions included).
        text_width = hidden_size if text_refiner_layers or joint_attention else text_dim
        self.text_proj = nn.Linear(text_dim, text_width)
        if text_refiner_layers or joint_attention:
            self.text_pos = nn.Parameter(torch.zeros(max_text_tokens, text_width))  # (L, D)
            self.text_refiner = nn.ModuleList(
                [TextRefinerBlock(text_width, num_heads, mlp_ratio) for _ in range(text_refiner_layers)]
            )
        if joint_attention:
            self.blocks = nn.ModuleList(
                [JointBlock(hidden_size, num_heads, mlp_ratio, last=i == depth - 1) for i in range(depth)]
            )
        else:
            self.blocks = nn.ModuleList(
                [DiTBlock(hidden_size, num_heads, text_width, mlp_ratio) for _ in range(depth)]
            )
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.proj_out = nn.Linear(hidden_size, in_channels * patch_size**2)
        if self_condition:  # the previous clean-latent estimate, patchified and added to the patch embedding
            # zero-initialised and drawing no random numbers: the other layers start as they would without it
            self.self_cond_embed = nn.utils.skip_init(nn.Linear, in_channels * patch_size**2, hidden_size)
        self.initialize_weights()

    def initialize_weights(self):
        """Xavier for linear layers; adaLN modulations and the output projection zeroed (adaLN-Zero, DiT sec. 3)."""
        for m in self.modules():
            if isinstance(m, nn.Linear) and m is not getattr(self, "self_cond_embed", None):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        if hasattr(self, "text_pos"):
            nn.init.normal_(self.text_pos, std=0.02)
        for block in self.blocks:
            if isinstance(block, JointBlock):
                for ada in block.ada.values():
                    nn.init.zeros_(ada[-1].weight)
                    nn.init.zeros_(ada[-1].bias)
                continue
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
            nn.init.zeros_(block.cross.out.weight)  # cross-attention also starts as a no-op
        zeroed = [self.ada_out[-1], self.proj_out]
        if hasattr(self, "self_cond_embed"):
            zeroed.append(self.self_cond_embed)
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def prepare_text(self, encoder_hidden_states: torch.Tensor, encoder_attention_mask=None) -> TextContext:
        """Everything the model derives from the text alone: per-block cross-attention keys and values, and
        the pooled text vector. A sampler computes it once per prompt instead of once per step."""
        mask = None if encoder_attention_mask is None else encoder_attention_mask.bool()  # (B, L)
        joint = self.config.joint_attention
        if joint and mask is not None and not torch.compiler.is_compiling():
            # the text stream costs as much per token as the image's, every step: drop all-padding columns
            L = max(int(mask.sum(1).max()), 1)
            encoder_hidden_states, mask = encoder_hidden_states[:, :L], mask[:, :L]
        text = self.text_proj(encoder_hidden_states)  # (B, L, E), or (B, L, D) with a refiner or joint attention
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
        if joint:
            return TextContext(kv=[], pooled=self.text_pool(pooled), mask=mask, states=text)
        kv = [block.cross.keys_values(text) for block in self.blocks]
        return TextContext(kv=kv, pooled=self.text_pool(pooled), mask=mask)

    def forward(
        self,
        sample,
        timestep,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        text_context: TextContext | None = None,
        self_cond: torch.Tensor | None = None,
        return_cross_attention: bool = False,
        return_dict=True,
    ):
        """sample (B, C, H, W), timestep (B,) or scalar, encoder_hidden_states (B, L, E), mask (B, L) of 1/0;
        or, instead of the last two, `text_context` from `prepare_text` (same result, less work per step).
        `self_cond` (B, C, H, W): for a `self_condition` model, the clean-latent estimate of the previous
        sampling step (Analog Bits self-conditioning); None means none yet (zeros), as at the first step.
        `return_cross_attention`: also return the cross-attention maps (`DiTOutput.cross_attention`), for
        `mmgen.training.grounding`; the prediction is the same either way."""
        B, C, H, W = sample.shape
        p = self.config.patch_size
        if H != self.config.sample_size or W != self.config.sample_size:
            raise ValueError(
                f"expected a {self.config.sample_size}x{self.config.sample_size} latent grid, got {H}x{W}"
            )
        if text_context is None:
            if encoder_hidden_states is None:
                raise ValueError("pass encoder_hidden_states (text encoder states) or a text_context")
            text_context = self.prepare_text(encoder_hidden_states, encoder_attention_mask)
        if return_cross_attention and self.config.joint_attention:
            raise ValueError("return_cross_attention needs cross-attention blocks; this DiT uses joint attention")
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(B)

        x = rearrange(sample, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)  # (B, T, p*p*C)
        x = self.patch_embed(x) + self.pos_embed  # (B, T, D)
        if self.config.self_condition:
            prev = torch.zeros_like(sample) if self_cond is None else self_cond.to(sample.dtype)
            x = x + self.self_cond_embed(rearrange(prev, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p))
        c = self.t_embed(timestep_embedding(timestep, 256).to(x.dtype)) + text_context.pooled  # (B, D)
        maps = []  # (B, T, L) per block, with return_cross_attention
        if self.config.joint_attention:  # the text is a second stream, updated in every block
            text = text_context.states
            for block in self.blocks:
                x, text = block(x, text, c, text_context.mask)
        else:  # cross-attention to text keys and values computed once per prompt
            for block, kv in zip(self.blocks, text_context.kv):
                x = block(x, c, kv, text_context.mask, return_attention=return_cross_attention)
                if return_cross_attention:
                    x, probs = x
                    maps.append(probs)
        shift, scale = self.ada_out(c).chunk(2, dim=1)
        x = self.proj_out(modulate(self.norm_out(x), shift, scale))  # (B, T, p*p*C)
        out = rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=H // p, p=p, q=p)
        maps = torch.stack(maps).mean(dim=0) if return_cross_attention else None  # (B, T, L)
        if not return_dict:
            return (out, maps) if return_cross_attention else (out,)
        return DiTOutput(out, maps)
