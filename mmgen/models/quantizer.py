"""Vector quantizer with a low-dimensional, l2-normalised codebook that stays fully used.

Follows VQ-VAE (van den Oord et al., 2017, https://arxiv.org/abs/1711.00937) with the codebook tricks of
ViT-VQGAN (Yu et al., 2021, https://arxiv.org/abs/2110.04627): codes live on the unit sphere of a small
space (dimension D = 4..32), so lookup is a cosine similarity and no code can drift far from the data.
The codebook is updated by exponential moving averages of the encoder outputs assigned to each code (Razavi
et al., VQ-VAE-2), initialised by spherical k-means on the first batch, and codes that stop being used are
restarted on random encoder outputs. Gradients reach the encoder through the straight-through estimator.
Under several processes (`accelerate launch`) the codebook is one: k-means and restarts see every process's
outputs, and the EMA adds every process's hits, so N processes with batch B update it as one with batch N*B.

Dimension letters: B batch, D code dim, H x W token grid, N = B*H*W flattened tokens, K codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def distributed() -> bool:
    """Whether this process is one of several training together (torch.distributed initialised, world > 1)."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Every process's x (same shape everywhere, as equal batches give) concatenated along dim 0, in rank order."""
    parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@dataclass
class QuantizerOutput:
    latents: torch.Tensor  # (B, D, H, W) quantised codes, straight-through in training
    indices: torch.Tensor  # (B, H, W) long
    commit_loss: torch.Tensor  # scalar: || z - sg[codes] ||^2
    perplexity: torch.Tensor  # scalar: exp(entropy of the batch's code histogram)


def spherical_kmeans(x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None):
    """k-means with cosine similarity on unit vectors x (N, D); returns unit centroids (K, D). With fewer vectors
    than centroids (N < K: a small batch of small crops for a large codebook), some start on the same vector; the
    quantizer's dead-code restarts spread them out as training goes."""
    if x.shape[0] >= k:
        start = torch.randperm(x.shape[0], generator=generator, device="cpu")[:k]
    else:
        start = torch.randint(x.shape[0], (k,), generator=generator, device="cpu")
    centroids = x[start.to(x.device)].clone()  # (K, D)
    for _ in range(iters):
        assign = (x @ centroids.T).argmax(dim=1)  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (K, D)
        counts = torch.bincount(assign, minlength=k)
        # An empty cluster keeps its previous centroid instead of collapsing to zero.
        centroids = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), centroids)
    return centroids


class VectorQuantizer(nn.Module):
    """Nearest-code quantizer over an l2-normalised codebook of K codes of dimension D.

    Args:
        num_codes: codebook size K.
        code_dim: code dimension D (4..32: low dimension keeps every code in use, ViT-VQGAN sec. 3.2).
        decay: EMA decay of the codebook statistics.
        commitment_weight: beta in VQ-VAE's loss, weighting || z - sg[e] ||^2.
        dead_code_threshold: a code whose EMA usage (hits per batch) drops below this is restarted; at most half a
            uniform code's share of the batch (N / 2K), so a batch with fewer tokens than codes does not restart
            codes that are used as often as the rest.
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        dead_code_threshold: float = 0.5,
    ):
        super().__init__()
        self.num_codes, self.code_dim = num_codes, code_dim
        self.decay, self.commitment_weight, self.dead_code_threshold = decay, commitment_weight, dead_code_threshold
        # Buffers, not parameters: the codebook is learned by EMA, yet saved and loaded with the model.
        self.register_buffer("codebook", F.normalize(torch.randn(num_codes, code_dim), dim=1))  # (K, D)
        self.register_buffer("ema_count", torch.ones(num_codes))  # (K,) EMA of hits per batch
        self.register_buffer("ema_sum", self.codebook.clone())  # (K, D) EMA of the sum of assigned z
        self.register_buffer("initialized", torch.tensor(False))

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest (highest cosine) code for unit vectors z (N, D) -> (N,), in float32 whatever the
        model's dtype. A codebook held in half precision is rounded off the unit sphere (in bfloat16 by up to
        0.4 %), so that a code's own vector could read as a longer near twin: it is put back on it first. In
        float32 the codes are used as they are (as every shipped model was trained and evaluated)."""
        codebook = self.codebook.float()
        if self.codebook.dtype != torch.float32:
            codebook = F.normalize(codebook, dim=1)
        return (z.float() @ codebook.T).argmax(dim=1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Exact inverse of the quantizer's indices: (B, H, W) long -> (B, D, H, W) codes."""
        if indices.ndim != 3:
            raise ValueError(f"token ids must be a (B, H, W) batch of grids, got shape {tuple(indices.shape)}")
        low, high = torch.stack(torch.aminmax(indices)).tolist() if indices.numel() else (0, 0)  # one device sync
        if not 0 <= low <= high < len(self.codebook):
            raise ValueError(f"token ids must lie in 0..{len(self.codebook) - 1}, got {low}..{high}")
        codes = F.embedding(indices, self.codebook)  # (B, H, W, D)
        return rearrange(codes, "b h w d -> b d h w")

    @torch.no_grad()
    def _update_codebook(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA update of the codebook from this batch (every process's, under several), then restart of codes
        that went unused. z (N, D) is taken in float32, the codebook's dtype: under mixed precision the encoder's
        outputs arrive in bfloat16, which index_add_ into the float32 sums refuses (a no-op in float32)."""
        z = z.float()
        if distributed():
            z, indices = all_gather(z), all_gather(indices)  # every process now holds the global batch
        threshold = min(self.dead_code_threshold, 0.5 * z.shape[0] / self.num_codes)
        if not self.initialized:
            self.codebook.copy_(spherical_kmeans(z, self.num_codes))
            self.ema_sum.copy_(self.codebook)
            # Start each count just above the restart threshold, not at the expected N/K hits: a code that
            # k-means placed well but the moving encoder leaves behind is then restarted within ~70 steps.
            self.ema_count.fill_(2 * threshold)
            self.initialized.fill_(True)
            self._share_codebook()  # k-means' random start: the first process's, everywhere
            return
        counts = torch.bincount(indices, minlength=self.num_codes).to(z.dtype)  # (K,)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, z)  # (K, D)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        self.codebook.copy_(F.normalize(self.ema_sum, dim=1))

        dead = self.ema_count < threshold
        if dead.any():
            # Restart on the worst-served encoder outputs, drawn in proportion to their quantisation error:
            # a restart on a random output would land in the dense flat-colour regions and starve again.
            n_dead = int(dead.sum())
            error = (1 - (z * self.codebook[indices]).sum(dim=1)).clamp_min(1e-8)  # (N,) cosine distance
            picks = z[torch.multinomial(error, n_dead, replacement=n_dead > z.shape[0])]
            self.codebook[dead] = picks
            self.ema_sum[dead] = picks
            self.ema_count[dead] = 2 * threshold
            self._share_codebook()  # the random picks: the first process's, everywhere

    def _share_codebook(self) -> None:
        """Under several processes, the first process's codebook and EMA sums everywhere (after random choices)."""
        if distributed():
            for buffer in (self.codebook, self.ema_sum):
                torch.distributed.broadcast(buffer, src=0)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise encoder outputs z (B, D, H, W); they are l2-normalised here."""
        B, D, H, W = z.shape
        unit = F.normalize(z.float(), dim=1)  # float32 for the lookup (see `lookup`)
        z = unit.to(z.dtype)
        flat = rearrange(z, "b d h w -> (b h w) d")  # (N, D)
        if self.training:
            self._update_codebook(flat.detach(), self.lookup(flat.detach()))
        indices = self.lookup(rearrange(unit, "b d h w -> (b h w) d"))  # (N,)
        codes = rearrange(self.codebook[indices], "(b h w) d -> b d h w", b=B, h=H, w=W)

        commit_loss = self.commitment_weight * F.mse_loss(z, codes.detach())
        # Straight-through in training (forward uses the codes, backward reaches z); exact codes otherwise.
        latents = z + (codes - z).detach() if self.training else codes
        probs = torch.bincount(indices, minlength=self.num_codes).float() / indices.numel()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return QuantizerOutput(latents, indices.view(B, H, W), commit_loss, perplexity)
