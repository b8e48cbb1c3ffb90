"""Compare generator model sizes and learning rates at the same wall-clock budget, on held-out denoising error.

    python benchmarks/generator_recipes.py                       # the recipes below, 5 minutes each
    python benchmarks/generator_recipes.py --minutes 2 --only xs-v

How the shipped model size was chosen (the "recipe probe" in docs/generator-runs.md). Each recipe trains a fresh
DiT for `--minutes` on the same 20,000 encoded shapes-v1 scenes with the trainer's objective (`diffusion_loss`:
v-prediction, capped Min-SNR; constant learning rate after 100 warm-up steps, bf16 autocast), then is scored on
512 held-out scenes (another seed) at t = 50, 150, ..., 950 with fixed noise: `x0_mid` is the mean squared error
of the clean-latent estimate at t = 150..850 (where layout and shape are decided), comparable across model sizes.
On a CPU, a fixed wall-clock budget is the honest comparison: a smaller model takes more steps in the same time.
(The recorded probe also compared epsilon targets, under plain Min-SNR: v won, and the trainer now trains v only;
its figures are in docs/training-notes.md.) The encoded data is cached in build/recipes/ (about 3 minutes the
first time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgen.denoising import predict_x0  # noqa: E402
from mmgen.models.dit import DIT_PRESETS, DiT  # noqa: E402
from mmgen.models.text_encoder import load_text_encoder  # noqa: E402
from mmgen.models.vqvae import VQVAE  # noqa: E402
from mmgen.training.encoded_data import encode_dataset, latent_scaling_factor, shapes_item  # noqa: E402
from mmgen.training.losses import diffusion_loss, training_scheduler  # noqa: E402

RECIPES = {  # name: (preset, learning rate, batch size)
    "s-v-3e-4": ("S/2", 3e-4, 64),  # the first shipped model's size and learning rate
    "s-v-1e-3": ("S/2", 1e-3, 64),
    "xs-v": ("XS/2", 1e-3, 64),  # the shipped recipe
    "xs-v-2e-3": ("XS/2", 2e-3, 64),
}


def cached_sets(vq: VQVAE, cache: Path) -> tuple[dict, dict]:
    if not (cache / "held.safetensors").exists():
        tokenizer, text_encoder = load_text_encoder()
        cache.mkdir(parents=True, exist_ok=True)
        for name, seed, n in [("train", 0, 20_000), ("held", 99, 512)]:
            data = encode_dataset(vq, tokenizer, text_encoder, shapes_item(seed), n)
            save_file({k: v.contiguous() for k, v in data.items()}, cache / f"{name}.safetensors")
    return load_file(cache / "train.safetensors"), load_file(cache / "held.safetensors")


def batch(data: dict, pick: torch.Tensor, codebook: torch.Tensor, scaling: float, gen, drop: float = 0.0):
    caption = data["caption_index"][pick].long().clone()
    caption[torch.rand(len(pick), generator=gen) < drop] = 0
    latents = F.embedding(data["ids"][pick].long(), codebook).permute(0, 3, 1, 2) * scaling
    return latents, data["text_states"][caption].float(), data["text_masks"][caption].bool()


@torch.no_grad()
def held_out_error(model, scheduler, held: dict, codebook, scaling: float) -> float:
    model.eval()
    gen, pick, errors = torch.Generator().manual_seed(1), torch.arange(len(held["ids"])), []
    for t0 in range(50, 1000, 100):
        latents, states, masks = batch(held, pick, codebook, scaling, gen)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.full((len(pick),), t0)
        noisy = scheduler.add_noise(latents, noise, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(noisy, t, states, masks).sample.float()
        if 150 <= t0 <= 850:
            errors.append(F.mse_loss(predict_x0(scheduler, noisy, out, t0), latents).item())
    model.train()
    return sum(errors) / len(errors)


def run(name: str, minutes: float, train: dict, held: dict, vq: VQVAE) -> dict:
    preset, lr, batch_size = RECIPES[name]
    torch.manual_seed(0)
    scheduler = training_scheduler()
    codebook, scaling = vq.quantizer.codebook.detach(), latent_scaling_factor(vq, train["ids"])
    model = DiT(
        sample_size=16, in_channels=vq.config.code_dim, scaling_factor=scaling, text_dim=384, **DIT_PRESETS[preset]
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    gen, step, t0 = torch.Generator().manual_seed(0), 0, time.time()
    while time.time() - t0 < minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        pick = torch.randint(0, len(train["ids"]), (batch_size,), generator=gen)
        latents, states, masks = batch(train, pick, codebook, scaling, gen, drop=0.1)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, 1000, (batch_size,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = diffusion_loss(model, scheduler, latents, noise, t, states, masks)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "recipe": name,
        "preset": preset,
        "lr": lr,
        "batch": batch_size,
        "params_M": round(params, 1),
        "steps": step,
        "s_per_step": round((time.time() - t0) / step, 3),
        "x0_mid": round(held_out_error(model, scheduler, held, codebook, scaling), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--only", default=",".join(RECIPES), help="comma-separated recipe names")
    p.add_argument("--cache", default=str(ROOT / "build" / "recipes"))
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    vq = VQVAE.from_pretrained(ROOT / "assets" / "mmgen-base-64", subfolder="vqvae", dtype=torch.float32).eval()
    train, held = cached_sets(vq, Path(args.cache))
    rows = []
    print(f"{'recipe':<14}{'preset':<7}{'lr':>8}{'batch':>6}{'params':>8}{'steps':>7}{'s/step':>8}{'x0_mid':>8}")
    for name in args.only.split(","):
        r = run(name, args.minutes, train, held, vq)
        rows.append(r)
        print(
            f"{r['recipe']:<14}{r['preset']:<7}{r['lr']:>8g}{r['batch']:>6}"
            f"{r['params_M']:>7}M{r['steps']:>7}{r['s_per_step']:>8}{r['x0_mid']:>8}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
