"""Train the VQ-VAE tokenizer on shapes-v1 scenes mixed with natural-photo crops (or on your own folder).

Runs on accelerate, so the same command runs on a laptop CPU or, unchanged, on many GPUs:

    mmgen train-tokenizer --recipe recipes/mmgen-base-64.toml    # rebuild the shipped f4 tokenizer, publish it
    mmgen train-tokenizer --out runs/vqvae                    # CPU, shapes-v1 + scikit-image photo crops
    accelerate launch -m mmgen.cli train-tokenizer --out runs/vqvae --batch-size 64
    mmgen train-tokenizer --data my_images/ --out runs/mine   # a folder of your own images
    mmgen train-tokenizer --out runs/vqvae --resume           # continue from the last checkpoint

Writes `OUT/vqvae/` (diffusers layout, loadable with `VQVAE.from_pretrained`), `OUT/checkpoints/step-N/`,
validation grids `OUT/samples/step-N.png` (originals above, reconstructions below) and `OUT/train_log.jsonl`.
Every sample is a pure function of (seed, index), so a seeded run is reproducible and resumes exactly. The
defaults are the [tokenizer] run of `recipes/mmgen-base-64.toml`.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from functools import partial
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers.optimization import get_cosine_schedule_with_warmup
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.images import ImageFolder, PhotoCrops, ShapesDataset, skimage_photos
from ..model_paths import model_path
from ..models.vqvae import VQVAE, VQVAE_PRESETS
from ..tokens import load_vqvae
from ..viz import image_grid
from .adversarial import AdversarialLoss, GANSettings
from .checkpoints import (
    append_log,
    load_training_state,
    open_run_log,
    previous_log,
    run_to_continue,
    save_training_state,
    saving_model,
    writing_checkpoint,
)
from .processes import hardware, make_accelerator, print_once
from .recipe import run_recipe
from .run_options import add_run_arguments, check_batch_fits, check_run_options, note_shapes_folder
from .stopping import graceful_stop, stop_if_asked, stoppable

VALIDATION_SEED = 1  # shapes-v1 stream used for validation; training reads stream `--seed`


class Mixture(Dataset):
    """Item i comes from `b` with probability p_b, else from `a`; the choice is a pure function of (seed, i)."""

    def __init__(self, a: Dataset, b: Dataset, p_b: float, seed: int):
        self.a, self.b, self.p_b, self.seed = a, b, p_b, seed

    def __len__(self):
        return len(self.a)

    def __getitem__(self, i):
        use_b = np.random.default_rng([self.seed, i, 1]).random() < self.p_b
        return self.b[i] if use_b else self.a[i]


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1]: (B, 3, H, W) x 2 -> (B,)."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def global_stats(accelerator, loss: torch.Tensor, batch_psnr: torch.Tensor, counts: torch.Tensor) -> dict:
    """The log's figures for the global batch: every process's loss, PSNR and code hits (K,) together."""
    counts = accelerator.reduce(counts, "sum")
    p = counts / counts.sum()
    return {
        "loss": round(accelerator.reduce(loss.detach(), "mean").item(), 5),
        "psnr": round(accelerator.reduce(batch_psnr, "mean").item(), 2),
        "usage": round((counts > 0).float().mean().item(), 3),
        "perplexity": round(torch.exp(-(p * torch.log(p + 1e-10)).sum()).item(), 1),
    }


def build_dataset(args, length: int) -> Dataset:
    note_shapes_folder(args)
    if args.data == "shapes":
        shapes = ShapesDataset(length, seed=args.seed, size=args.resolution, scale=args.shapes_scale)
        if args.photo_fraction <= 0:
            return shapes
        photos = PhotoCrops(skimage_photos(), length, size=args.resolution, seed=args.seed)
        return Mixture(shapes, photos, args.photo_fraction, args.seed)
    folder = ImageFolder(args.data, length=length, size=args.resolution, seed=args.seed)
    left_out = folder.skip_summary()  # said either way: a clean folder's count confirms what was read
    print_once(f"{args.data}: {len(folder.paths)} images used" + (f", {left_out}" if left_out else ""))
    return folder


MAX_CODES = 65536  # token ids then fit 16 bits; the largest VQGAN codebooks have 16,384
MAX_RESOLUTION = 1024  # the training crop's side (the shipped recipes use 64)


def check_sizes(args: argparse.Namespace, downsample_factor: int = 1) -> None:
    """The codebook's size and the crop's side (a multiple of the tokenizer's downsampling, once it is known)."""
    if args.num_codes is not None and not 2 <= args.num_codes <= MAX_CODES:
        raise ValueError(f"--num-codes must be between 2 and {MAX_CODES}, got {args.num_codes}")
    if args.resolution > MAX_RESOLUTION:
        raise ValueError(f"--resolution is the training crop's side: at most {MAX_RESOLUTION}, got {args.resolution}")
    if args.resolution % downsample_factor:
        f = downsample_factor
        raise ValueError(f"--resolution must be a multiple of {f}, its downsampling; got {args.resolution}")


def reconstruction_loss(model: VQVAE, resolution: int, n: int) -> torch.Tensor:
    """A training step's loss on `n` blank images, on a copy of `model` (its codebook not updated; no RNG drawn)."""
    probe = copy.deepcopy(model)
    probe.quantizer.eval()
    out = probe(torch.zeros(n, model.config.in_channels, resolution, resolution))
    return out.recon_loss + out.commit_loss


def initial_tokenizer(model: str, num_codes: int | None = None) -> VQVAE:
    """The tokenizer of a trained run or model folder (`MODEL/vqvae/`, a local path or a Hub id), to fine-tune on
    other images: its architecture and codebook come with it (the codebook is not k-means-initialised again)."""
    try:
        vq = load_vqvae(model_path(model, shipped=False))
    except ValueError as e:
        raise ValueError(f"--init-from {model}: {e}") from None
    if num_codes and num_codes != vq.config.num_codes:
        raise ValueError(
            f"--init-from {model}: its codebook has {vq.config.num_codes} codes, not --num-codes {num_codes}"
        )
    return vq


def starting_tokenizer(args, ckpt: Path | None) -> VQVAE:
    """The tokenizer a run starts from: its latest checkpoint, the --init-from model, or a new one of --preset."""
    if ckpt:
        return VQVAE.from_pretrained(ckpt / "vqvae")
    if args.init_from:
        return initial_tokenizer(args.init_from, args.num_codes)
    return VQVAE(**(VQVAE_PRESETS[args.preset] | ({"num_codes": args.num_codes} if args.num_codes else {})))


def validation_batch(args, n: int = 8) -> torch.Tensor:
    """Fixed images to watch during training (`val_psnr`): shapes scenes of a stream training never draws, half of
    them crops of the training photos when it trains on photos; for a folder, fixed crops of its own images, so
    there it tracks the fit, not held-out quality (`mmgen eval-tokenizer --folder` measures that)."""
    if args.data == "shapes":
        shapes = ShapesDataset(n, seed=VALIDATION_SEED, size=args.resolution, scale=args.shapes_scale)
        items = [shapes[i] for i in range(n)]
        if args.photo_fraction > 0:
            crops = PhotoCrops(skimage_photos(), n, size=args.resolution, seed=VALIDATION_SEED)
            items = items[: n // 2] + [crops[i] for i in range(n // 2)]
    else:
        folder = ImageFolder(args.data, length=n, size=args.resolution, seed=VALIDATION_SEED)
        items = [folder[i] for i in range(n)]
    return torch.stack([it["pixel_values"] for it in items])


def save_model(model: VQVAE, path: Path, memory_format=torch.contiguous_format) -> None:
    """save_pretrained in the standard memory layout (safetensors stores contiguous tensors only), then back."""
    model.to(memory_format=torch.contiguous_format).save_pretrained(path)
    model.to(memory_format=memory_format)


def save_checkpoint(accelerator, model, optimizer, scheduler, step: int, out: Path, memory_format, gan, keep: int = 2):
    """Model in safetensors (diffusers layout) plus optimizer state, and the discriminator with its optimizer
    when training a VQ-GAN; only tensors, so loadable with weights_only."""
    with writing_checkpoint(out, step, keep) as ckpt:
        save_model(accelerator.unwrap_model(model), ckpt / "vqvae", memory_format)
        save_training_state(ckpt, optimizer, scheduler, step)
        if gan is not None:
            gan.save(ckpt)


def short(gan_stats: dict) -> dict:
    """The progress bar's GAN figures: discriminator loss, its mean logits on real and reconstructed images."""
    return {k: gan_stats[k] for k in ("d_loss", "d_real", "d_fake") if k in gan_stats}


def gan_settings(args) -> GANSettings | None:
    if not args.adversarial:
        return None
    return GANSettings(disc_start=args.disc_start, disc_weight=args.disc_weight, feature_weight=args.feature_weight)


def main(args: argparse.Namespace) -> Path:
    """`train(args)`, or with --recipe the recipe's tokenizer run, published into its model folder."""
    with graceful_stop():
        if args.recipe:
            return run_recipe(args, "tokenizer", add_arguments, train)
        return train(args)


def train(args: argparse.Namespace) -> Path:
    """One training run into `args.out`; returns the trained `OUT/vqvae` folder."""
    check_run_options(args)
    if args.decoder_only and not args.init_from:
        raise ValueError("--decoder-only fine-tunes a trained tokenizer's decoder: name it with --init-from")
    check_sizes(args)
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    out = Path(args.out)
    ckpt = run_to_continue(args, "vqvae", accelerator.print, accelerator.num_processes)
    model = starting_tokenizer(args, ckpt)
    check_sizes(args, model.downsample_factor)
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    trained = model.decoder if args.decoder_only else model
    if args.decoder_only:  # the encoder and the codebook (an EMA, updated only in training mode) stay as they are
        model.encoder.requires_grad_(False)
    check_batch_fits(args.batch_size, partial(reconstruction_loss, model, args.resolution), accelerator)
    # AdamW with a short warm-up and cosine decay: the decay's last stretch is worth ~1 dB of PSNR.
    optimizer = torch.optim.AdamW(trained.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    n = accelerator.num_processes  # accelerate steps a prepared scheduler once per process at every step
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps * n, args.steps * n)
    start_step = 0
    if ckpt:
        start_step = load_training_state(ckpt, optimizer, scheduler)
        rng_at_checkpoint = torch.get_rng_state()  # set again at the first step (below)
        accelerator.print(f"resumed from {ckpt} at step {start_step}")

    settings = gan_settings(args)
    gan = AdversarialLoss.resume(settings, accelerator, ckpt) if settings else None

    # Item i of one sequence whatever the process count: under N processes a step's global batch is the N*B
    # items a single process with batch N*B would see (accelerate deals batch k to process k mod N).
    dataset = build_dataset(args, length=args.steps * args.batch_size * accelerator.num_processes)
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers, drop_last=True
    )
    # channels-last convolutions are ~20 % faster on CPU (oneDNN); weights are saved in the standard layout.
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    saved = (accelerator, model, optimizer, scheduler)  # what a checkpoint holds, the GAN aside
    loader = accelerator.skip_first_batches(loader, start_step) if start_step else loader
    val_images = validation_batch(args).to(accelerator.device)
    out.mkdir(parents=True, exist_ok=True)  # after the data is found: a refused run leaves no folder behind

    log_path, trained_s = out / "train_log.jsonl", 0.0  # trained_s: the time a resumed run trained before
    if accelerator.is_main_process:
        skipped = getattr(dataset, "skipped", None) or None  # a folder's files left out, counted by kind
        previous = previous_log(args.init_from, "vqvae_train_log.jsonl")  # the tokenizer it starts from
        header = {"config": config, "gan": gan.config() if gan else None, "data_skipped": skipped}
        header |= {"num_processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision}
        header["hardware"] = hardware(accelerator)
        trained_s = open_run_log(log_path, args, start_step, previous, **header)
    num_codes = config["num_codes"]
    recent_counts = torch.zeros(num_codes, device=accelerator.device)  # code hits over the last log window
    bar = tqdm(total=args.steps, initial=start_step, disable=not accelerator.is_main_process, desc="tokenizer")
    t0, step = time.time() - trained_s, start_step
    training_mode(accelerator.unwrap_model(model), args.decoder_only)
    batches = iter(loader)
    first = next(batches, None)  # the loader draws its seed from the global RNG at its first batch
    if ckpt:  # that draw and building the discriminator moved the RNG on from the checkpoint's: back to it, so the
        torch.set_rng_state(rng_at_checkpoint)  # resumed run goes on exactly as an unbroken one
    for batch in stoppable(chain([first] if first is not None else [], batches)):
        x = batch["pixel_values"].contiguous(memory_format=memory_format)
        out_ = model(x)
        loss = out_.recon_loss + out_.commit_loss
        gan_stats = {}
        if gan is not None:  # VQ-GAN: the adversarial terms, then a discriminator step
            last_layer = accelerator.unwrap_model(model).decoder.net[-1].weight
            extra, gan_stats = gan.generator_loss(x, out_.sample, out_.recon_loss, step, last_layer)
            loss = loss + extra
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if gan is not None:
            gan_stats |= gan.discriminator_step(x, out_.sample, step)
        step += 1
        recent_counts += torch.bincount(out_.indices.flatten(), minlength=num_codes)  # this process's hits

        figures = partial(training_figures, accelerator, loss, out_, x, recent_counts, scheduler, t0, gan_stats, bar)
        record = step_record(args, step, figures, partial(validate, accelerator, model, val_images, out, step))
        if record and accelerator.is_main_process:
            append_log(log_path, record)
        if step % args.checkpoint_every == 0 and step < args.steps and accelerator.is_main_process:
            save_checkpoint(*saved, step, out, memory_format, gan)
        bar.update(1)
        if step >= args.steps:
            break
        checkpoint = partial(save_checkpoint, *saved, step, out, memory_format, gan)
        stop_if_asked(step, args.checkpoint_every, out, checkpoint, accelerator)  # Ctrl-C, SIGTERM: this step's
    bar.close()
    accelerator.wait_for_everyone()
    failed = failed_to_decode(dataset, accelerator)  # every process's share of the folder
    if accelerator.is_main_process:
        finish(accelerator.unwrap_model(model), out, step, time.time() - t0, failed)
    return out / "vqvae"


def training_figures(accelerator, loss, out_, x, counts, scheduler, t0: float, gan_stats: dict, bar) -> dict:
    """A log step's figures for the global batch (loss, PSNR of images x (B, 3, H, W), code usage over the window
    of `counts` (K,), which starts again), the LR, the time and the GAN's; shown on the progress bar too."""
    stats = global_stats(accelerator, loss, psnr(out_.sample.detach(), x).mean(), counts)
    counts.zero_()
    stats = {**stats, "lr": scheduler.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 1)} | gan_stats
    bar.set_postfix(loss=stats["loss"], psnr=stats["psnr"], usage=stats["usage"], **short(gan_stats))
    return stats


def step_record(args, step: int, figures: Callable[[], dict], validation: Callable[[], float]) -> dict | None:
    """The log record of `step`: the training figures every --log-every steps, the validation PSNR every
    --val-every steps, each on its own schedule (the last step has both); None on a step with neither. The figures are
    gathered from every process, so every process calls this at every step; only the main one writes the record."""
    record = {"step": step}
    if step % args.log_every == 0 or step == args.steps:
        record |= figures()
    if step % args.val_every == 0 or step == args.steps:
        record["val_psnr"] = round(validation(), 2)
    return record if len(record) > 1 else None


def training_mode(vq: VQVAE, decoder_only: bool) -> None:
    """Training mode; with --decoder-only, the encoder and the codebook (an EMA, updated in training mode) stay in
    eval mode."""
    vq.train()
    if decoder_only:
        vq.encoder.eval()
        vq.quantizer.eval()


def finish(model: VQVAE, out: Path, step: int, train_time_s: float, extra: dict) -> None:
    """Save the trained tokenizer as OUT/vqvae and close the run's log."""
    with saving_model(out / "vqvae"):
        save_model(model, out / "vqvae")
    append_log(out / "train_log.jsonl", {"done": True, "steps": step, "train_time_s": round(train_time_s, 1)} | extra)
    print(f"saved {out / 'vqvae'} after {step} steps in {train_time_s:.0f} s")


def failed_to_decode(dataset, accelerator) -> dict:
    """A folder's images that broke after their header in training (counted with no loader workers), gathered
    from every process (each read its own share: the others' went unsaid), said, and as a log field; {} when none
    did. Every process calls it (a collective)."""
    failed, paths = dict(getattr(dataset, "failed", {})), getattr(dataset, "paths", None)
    if accelerator.num_processes > 1 and paths:  # one mark per file, summed (an object gather aborted at exit)
        marks = torch.zeros(len(paths), device=accelerator.device)
        where = {str(path): i for i, path in enumerate(paths)}
        marks[[where[path] for path in failed if path in where]] = 1.0
        marks = accelerator.reduce(marks, "sum").cpu()
        failed = {str(paths[i]): failed.get(str(paths[i]), "") for i in marks.nonzero().flatten().tolist()}
    if not failed:
        return {}
    named = ", ".join(Path(p).name for p in list(failed)[:3])
    images = "image" if len(failed) == 1 else "images"
    accelerator.print(f"{len(failed)} {images} failed to decode; their neighbours stood in (e.g. {named})")
    return {"failed_to_decode": len(failed)}


@torch.no_grad()
def validate(accelerator, model, images: torch.Tensor, out: Path, step: int) -> float:
    vq = accelerator.unwrap_model(model)
    modes = [m.training for m in vq.modules()]  # restored after: with --decoder-only, part stays in eval mode
    vq.eval()
    recon = vq.decode(vq.encode(images).latents)
    for m, mode in zip(vq.modules(), modes):
        m.train(mode)
    if accelerator.is_main_process:
        (out / "samples").mkdir(exist_ok=True)
        image_grid(torch.cat([images, recon]), rows=2).save(out / "samples" / f"step-{step}.png")
    return psnr(recon, images).mean().item()


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options; their defaults are the [tokenizer] run of `recipes/mmgen-base-64.toml`."""
    p.add_argument(
        "--recipe",
        default=None,
        metavar="FILE",
        help="train the tokenizer of a recipe (e.g. recipes/mmgen-base-64.toml) and publish it into its model "
        "folder; a finished run is skipped and an interrupted one resumes",
    )
    p.add_argument("--out", default="runs/vqvae", help="output folder (model, checkpoints, samples, log)")
    p.add_argument("--data", default="shapes", help="'shapes' (shapes-v1 + photo crops) or a folder of images")
    p.add_argument(
        "--photo-fraction",
        type=float,
        default=0.45,
        help="share of scikit-image photo crops mixed into shapes-v1 (0 = scenes only)",
    )
    p.add_argument(
        "--preset",
        default="base",
        choices=sorted(VQVAE_PRESETS),
        help="the tokenizer's size: base = f4 (a 16x16 token grid from 64 px), f8 (from 128 px), f16 (from 256 px); "
        "tiny for tests",
    )
    p.add_argument("--num-codes", type=int, default=None, help="codebook size (default: the preset's)")
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune the tokenizer in MODEL/vqvae (a run or model folder) instead of training one from scratch; "
        "its architecture is kept (--preset does not apply; a --num-codes other than its codebook's is refused)",
    )
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="with --init-from: train the decoder alone; the encoder and codebook, so every image's tokens, stay "
        "the same (a generator trained on them keeps working)",
    )
    p.add_argument("--resolution", type=int, default=64, help="training crop size in pixels")
    p.add_argument(
        "--shapes-scale",
        type=int,
        choices=(1, 2, 4),
        default=None,
        help="draw shapes-v1 at 64, 128 or 256 px (x1, x2, x4) before cropping to --resolution (default: the "
        "scale --resolution asks for)",
    )
    p.add_argument(
        "--adversarial",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="VQ-GAN: train a PatchGAN discriminator in turn with the tokenizer (hinge loss, adaptive weight, "
        "discriminator feature matching); --no-adversarial: a plain VQ-VAE",
    )
    p.add_argument("--disc-start", type=int, default=1000, help="steps before the discriminator starts")
    p.add_argument("--disc-weight", type=float, default=0.5, help="adversarial term, times the adaptive weight")
    p.add_argument(
        "--feature-weight",
        type=float,
        default=0.05,
        help="discriminator feature matching (offline perceptual term); at 0.05 about the size of the pixel loss",
    )
    add_run_arguments(
        p, steps=2900, batch_size=32, lr=1e-3, warmup_steps=100, log_every=25, val_every=250, checkpoint_every=500
    )
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="channels-last convolutions (faster on CPU)",
    )
    return p


if __name__ == "__main__":
    main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
