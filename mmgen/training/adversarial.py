"""VQ-GAN's adversarial training, added to the VQ-VAE's reconstruction and commitment losses.

Following VQGAN (Esser et al., 2021, https://arxiv.org/abs/2012.09841) and taming-transformers' loss:
- a PatchGAN discriminator (`mmgen.models.discriminator`) trained in turn with the tokenizer, on a hinge loss;
- the tokenizer's adversarial term -mean(D(x̂)), weighted by the *adaptive weight*
  lambda = ||grad_L L_rec|| / (||grad_L L_adv|| + 1e-4) at the decoder's last layer L, so the adversarial gradient
  is as large as the reconstruction's there whatever the losses' scales (times `disc_weight`);
- both switched on only after `disc_start` steps, once reconstructions are roughly right;
- instead of a perceptual (LPIPS) term, whose pretrained VGG weights cannot be downloaded here, discriminator
  feature matching (Salimans et al., 2016; pix2pixHD): the L1 distance between the discriminator's activations on
  the image and on its reconstruction, every layer, which rewards the edges and textures the discriminator sees.

    gan = AdversarialLoss(GANSettings(disc_start=500), accelerator)
    loss, stats = gan.generator_loss(x, out.sample, rec_loss, step, vq.decoder.net[-1].weight)
    ...backward, tokenizer optimizer step...
    stats |= gan.discriminator_step(x, out.sample, step)

Dimension letters: B batch, H x W pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.discriminator import PatchDiscriminator
from ..models.quantizer import distributed

ADAPTIVE_WEIGHT_MAX = 1e4  # taming-transformers' clamp: early on, tiny adversarial gradients would blow it up


@dataclass(frozen=True)
class GANSettings:
    disc_start: int = 1000  # tokenizer steps before the discriminator and the adversarial term start
    disc_weight: float = 0.5  # times the adaptive weight
    feature_weight: float = 0.05  # discriminator feature matching (0: none); 1.0 drowned the pixel loss 25x
    disc_lr: float = 2e-4
    disc_channels: int = 32
    disc_layers: int = 3


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between activations; the real image's are targets (no gradient)."""
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real, fake)) / len(real)


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """||d rec / d last_layer|| / (||d adv / d last_layer|| + 1e-4), clamped, without gradient. Under several
    processes both gradients are first averaged over them: each loss is a mean over a process's equal share of the
    global batch, so the averages are the global batch's gradients, and the weight is the one a single process
    with that batch computes (a norm of each process's own gradient would not be); one process is unchanged."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    if distributed():
        grads = torch.stack([rec_grad, adv_grad])  # (2, *last_layer.shape): one collective for both
        torch.distributed.all_reduce(grads)
        rec_grad, adv_grad = grads / torch.distributed.get_world_size()
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, ADAPTIVE_WEIGHT_MAX).detach()


class AdversarialLoss:
    """The discriminator, its optimizer and both sides' losses; `accelerator` prepares and steps them."""

    def __init__(self, settings: GANSettings, accelerator, discriminator: PatchDiscriminator | None = None):
        self.settings, self.accelerator = settings, accelerator
        disc = discriminator or PatchDiscriminator(channels=settings.disc_channels, num_layers=settings.disc_layers)
        optimizer = torch.optim.Adam(disc.parameters(), lr=settings.disc_lr, betas=(0.5, 0.9))
        self.discriminator, self.optimizer = accelerator.prepare(disc, optimizer)
        # The tokenizer's side runs the unwrapped module with D frozen: no gradient into D, so nothing for a
        # multi-process wrapper to synchronise.
        self.frozen = accelerator.unwrap_model(self.discriminator)

    def active(self, step: int) -> bool:
        return step >= self.settings.disc_start

    def generator_loss(
        self, x: torch.Tensor, recon: torch.Tensor, rec_loss: torch.Tensor, step: int, last_layer: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        """The tokenizer's extra loss for images x and reconstructions recon, (B, 3, H, W) each: feature
        matching plus the weighted adversarial term (zero before `disc_start`), and its figures for the log."""
        if not self.active(step):
            return rec_loss.new_zeros(()), {}
        self.frozen.requires_grad_(False)  # gradients flow through D to the tokenizer, not into D
        fake = self.frozen(recon)
        adv = -fake.logits.mean()
        extra, stats = rec_loss.new_zeros(()), {}
        if self.settings.feature_weight > 0:
            with torch.no_grad():
                real_features = self.frozen(x).features
            fm = feature_matching_loss(real_features, fake.features)
            extra = extra + self.settings.feature_weight * fm
            stats["feature_match"] = round(self._mean(fm), 5)
        weight = self.settings.disc_weight * adaptive_weight(rec_loss, adv, last_layer)
        self.frozen.requires_grad_(True)
        stats |= {"g_adv": round(self._mean(adv), 4), "adaptive_weight": round(weight.item(), 4)}
        return extra + weight * adv, stats

    def discriminator_step(self, x: torch.Tensor, recon: torch.Tensor, step: int) -> dict:
        """One hinge-loss step of the discriminator on real images and (detached) reconstructions."""
        if not self.active(step):
            return {}
        logits = self.discriminator(torch.cat([x, recon.detach()])).logits  # one forward: real, then fake
        real, fake = logits.chunk(2)
        loss = hinge_discriminator_loss(real, fake)
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {
            "d_loss": round(self._mean(loss), 4),
            "d_real": round(self._mean(real.mean()), 3),  # mean logit: > 0 the discriminator calls them real
            "d_fake": round(self._mean(fake.mean()), 3),
        }

    def _mean(self, value: torch.Tensor) -> float:
        """A figure of this process's slice, as the global batch's: the mean over processes (every process calls
        this at the same points: a collective)."""
        return self.accelerator.reduce(value.detach().float(), "mean").item()

    # ------------------------------------------------------------------ checkpoints
    def save(self, ckpt: Path) -> None:
        """The discriminator (safetensors) and its optimizer beside the tokenizer's checkpoint."""
        self.accelerator.unwrap_model(self.discriminator).save_pretrained(Path(ckpt) / "discriminator")
        torch.save({"optimizer": self.optimizer.state_dict()}, Path(ckpt) / "discriminator_state.pt")

    @classmethod
    def resume(cls, settings: GANSettings, accelerator, ckpt: Path | None) -> AdversarialLoss:
        """A fresh one, or the one saved in `ckpt` (a checkpoint from before the GAN started has none)."""
        folder = Path(ckpt) / "discriminator" if ckpt else None
        if folder is None or not folder.is_dir():
            return cls(settings, accelerator)
        gan = cls(settings, accelerator, PatchDiscriminator.from_pretrained(folder))
        state = torch.load(Path(ckpt) / "discriminator_state.pt", weights_only=True)
        gan.optimizer.load_state_dict(state["optimizer"])
        return gan

    def config(self) -> dict:
        return asdict(self.settings)
