"""Train the text-conditioned DiT in the frozen tokenizer's latent space (shapes-v1 by default, or your folder).

    mmgen train-generator --recipe recipes/mmgen-base.toml             # rebuild the shipped generator, all stages
    mmgen train-generator --out runs/generator --mixed-precision bf16 --compile   # its first stage alone
    mmgen train-generator --data my_images/ --out runs/mine          # imagefolder with metadata.jsonl captions
    accelerate launch -m mmgen.cli train-generator --out runs/generator --batch-size 256
    mmgen train-generator --out runs/generator --resume
    mmgen train-generator --out runs/stage2 --init-from runs/generator --steps 2000 --lr 2e-4  # a second stage

The defaults are the first stage of `recipes/mmgen-base-64.toml`. Before the loop, the training set is encoded once
(`mmgen.training.encoded_data`: token ids, MiniLM states per distinct caption) and cached on disk. Latents are the
ids' code vectors times `scaling_factor`, the factor that brings them to unit variance. The loss is v-prediction
with capped Min-SNR weights (`mmgen.training.losses`). EMA weights (diffusers `EMAModel`) are what gets saved and
sampled. Writes `OUT/transformer/`, `OUT/scheduler/`, `OUT/checkpoints/step-N/`, validation grids
`OUT/samples/step-N.png` (its prompts: `prompts.txt`) and `OUT/train_log.jsonl`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..data.images import ImageFolder
from ..eval import count
from ..model_paths import model_path, tokenizer_folder
from ..models.dit import DIT_PRESETS, DiT
from ..models.text_encoder import MAX_TOKENS, load_text_encoder
from ..models.vqvae import VQVAE
from ..pipeline import MMGenPipeline
from ..settings import MAX_PROMPT_CHARS
from ..tokens import load_vqvae
from ..viz import image_grid
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
from .encoded_data import CROPS_PER_IMAGE, cached_training_set, default_num_samples, draw_batch, latent_scaling_factor
from .init_from import NEW_DIT, new_dit_options, same_tokenizer, starting_dits
from .losses import SNR_GAMMA, diffusion_loss, object_cell_weights, training_scheduler
from .processes import hardware, make_accelerator
from .recipe import run_recipe
from .run_options import add_run_arguments, check_batch_fits, check_run_options, note_shapes_folder
from .stopping import graceful_stop, stop_if_asked, stoppable

VALIDATION_PROMPTS = [
    "a large red circle in the top left on a white background",
    "a small blue star at the bottom on a black background",
    "a green triangle in the center on a gray background",
    "a yellow square to the left of a purple cross on a white background",
    "a large orange diamond on the right on a black background",
    "a pink cross above a cyan circle on a gray background",
    "a small cyan star in the bottom right on a white background",
    "a blue diamond below a red square on a black background",
]
# Settings that were options once and are fixed now, logged with the options so that every run's log says what
# it trained with (the model card reads them).
FIXED_SETTINGS = {"prediction_type": "v_prediction", "loss_weighting": "min-snr-1", "snr_gamma": SNR_GAMMA}


@dataclass
class Run:
    """Everything the loop works on, set up by `prepare_run`."""

    vq: VQVAE
    tokenizer: object
    text_encoder: object
    data: dict  # the encoded training set (`encoded_data.encode_dataset`)
    model: DiT  # wrapped by accelerate (and torch.compile with --compile)
    ema: EMAModel
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    noise_scheduler: DDPMScheduler
    gen: torch.Generator  # batches, caption dropout, noise and timesteps
    start_step: int
    header: dict  # extra fields for the log's header
    sample_prompts: list[str] | None = None  # what the validation samples show (`validation_prompts`)
    teacher: DiT | None = None  # with --distill-depth: the full DiT whose predictions the student learns


def dit_loss(model: DiT, n: int) -> torch.Tensor:
    """A training step's loss for `n` blank latents and captions (no RNG drawn), to measure what a batch keeps."""
    c, side, width = model.config.in_channels, model.config.sample_size, model.config.text_dim
    states, mask = torch.zeros(n, MAX_TOKENS, width), torch.ones(n, MAX_TOKENS)
    return model(torch.zeros(n, c, side, side), torch.zeros(n, dtype=torch.long), states, mask).sample.square().mean()


def prepare_run(args, accelerator: Accelerator) -> Run:
    """Load the frozen models, encode (or read) the training set, build or load the DiT, its EMA and optimizer,
    and restore a checkpoint with --resume. Bad options fail before minutes of encoding; a batch too large for the
    memory right after it (measured on the DiT, which needs the encoded set's scaling factor; the set is cached)."""
    object_cell_weights(torch.zeros(1, 1, 1, dtype=torch.long), args.object_loss_weight)
    asked = new_dit_options(args)  # the size given; a new DiT's default where not (--init-from: checked)
    ckpt = run_to_continue(args, "transformer", accelerator.print, accelerator.num_processes)
    try:  # a folder without vqvae/ (a generator's run, say) or another model's; model_path's errors say it all
        folder = model_path(args.vqvae, shipped=False)
        lone = os.path.isdir(folder) and tokenizer_folder(folder) == Path(folder)  # its vqvae/ itself, given
        vq = load_vqvae(folder, subfolder=None if lone else "vqvae")
    except ValueError as e:
        raise ValueError(f"--vqvae {args.vqvae}: {e}") from None
    vq.requires_grad_(False)
    side = args.sample_size * vq.downsample_factor
    accelerator.print(f"training at {side}x{side} px: {args.sample_size}x{args.sample_size} tokens of {args.vqvae}")
    tokenizer, text_encoder = load_text_encoder()
    init, teacher = starting_dits(args, vq, text_encoder, asked, ckpt, accelerator)
    t0 = time.time()
    # Under N processes the main one encodes and caches the set first, and the others read it (without a cache,
    # --cache-dir '', each encodes its own at once: waiting would gain nothing).
    with accelerator.main_process_first() if args.cache_dir else contextlib.nullcontext():
        data = cached_training_set(args, vq, tokenizer, text_encoder)
    encoding_s = round(time.time() - t0, 1)  # logged: a rebuild's time is its stages' training plus this
    accelerator.print(
        f"{len(data['ids'])} encoded images (crops, for a folder), {len(data['text_states']) - 1} distinct captions "
        f"and the empty one (guidance's), {encoding_s:.0f} s"
    )
    if "captions_cut" in data and (cut := int(data["captions_cut"].sum())):  # (not in caches from before it was)
        share = data["captions_cut"][data["caption_index"]].float().mean()
        accelerator.print(
            f"note: {cut} of {len(data['text_states']) - 1} distinct captions ({share:.0%} of the images) are longer "
            f"than the {MAX_TOKENS - 2} word pieces the text encoder reads (about 20 words): their ends are never "
            "seen. Shorten them to train on every word."
        )
    if ckpt:
        model = DiT.from_pretrained(ckpt / "transformer")
    elif init is not None:
        model = init
        if not same_tokenizer(args.init_from, vq):
            model.register_to_config(scaling_factor=latent_scaling_factor(vq, data["ids"]))
            accelerator.print(f"--init-from {args.init_from} has another tokenizer: scaling factor measured again")
    else:
        model = DiT(
            sample_size=args.sample_size,
            in_channels=vq.config.code_dim,
            scaling_factor=latent_scaling_factor(vq, data["ids"]),
            text_dim=text_encoder.config.hidden_size,
            text_refiner_layers=args.text_refiner_layers,
            max_text_tokens=MAX_TOKENS,
            **DIT_PRESETS[args.preset],
        )
    check_batch_fits(args.batch_size, partial(dit_loss, model), accelerator)
    ema = EMAModel(model.parameters(), decay=args.ema_decay, model_cls=DiT, model_config=model.config)
    header = {
        "scaling_factor": model.config.scaling_factor,
        "codebook_fingerprint": vq.codebook_fingerprint,  # `release` pairs the DiT only with this codebook
        "distinct_captions": len(data["text_states"]),
        "encoding_s": encoding_s,
        "num_processes": accelerator.num_processes,  # the global batch is batch_size x num_processes
        "mixed_precision": accelerator.mixed_precision,  # what ran: the option, else accelerate's setting
        "hardware": hardware(accelerator),  # for the card: "a 2-core CPU (no GPU)", "1 NVIDIA H100 ..."
    }
    if args.data != "shapes":  # where the folder is, wherever `release` later runs (it reads the captions again)
        header["data_folder"] = str(Path(args.data).resolve())
    if args.compile:  # same parameters, fused kernels; unwrap_model gives back the plain DiT for saving
        model = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    n = accelerator.num_processes  # accelerate steps a prepared scheduler once per process at every step
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps * n, args.steps * n)
    # One stream in every process: each draws the global batch and trains on its own slice of it (below).
    gen = torch.Generator().manual_seed(args.seed * 1000)
    start_step = 0
    if ckpt:
        ema.load_state_dict(torch.load(ckpt / "ema.pt", weights_only=True))
        start_step = load_training_state(ckpt, optimizer, lr_scheduler, gen)  # the stream every process shares
        accelerator.print(f"resumed from {ckpt} at step {start_step}")
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema.to(accelerator.device)
    return Run(
        vq=vq,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        data=data,
        model=model,
        ema=ema,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        noise_scheduler=training_scheduler(),
        gen=gen,
        start_step=start_step,
        header=header,
        sample_prompts=validation_prompts(args.data),  # a folder's headers and captions, read once
        teacher=teacher,
    )


def train(args: argparse.Namespace) -> Path:
    """One training run (or stage) into `args.out`; returns that folder."""
    check_run_options(args)
    accelerator = make_accelerator(args)
    if args.num_samples is None:  # recorded as resolved: the log's header, the vocabulary and the card read it
        args.num_samples = default_num_samples(args.data)
        if args.data != "shapes":
            accelerator.print(
                f"{args.data}: {args.num_samples:,} crops to encode, {CROPS_PER_IMAGE} of each image at most"
            )
    set_seed(args.seed)
    if accelerator.is_main_process:
        note_shapes_folder(args)
    run = prepare_run(args, accelerator)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    trained_s = 0.0  # the time a resumed run trained before
    if accelerator.is_main_process:
        settings = argparse.Namespace(**vars(args), **FIXED_SETTINGS)
        previous = previous_log(args.init_from, "generator_train_log.jsonl")  # the DiT it starts from
        trained_s = open_run_log(log_path, settings, run.start_step, previous, **run.header)

    model, teacher, codebook, device = run.model, run.teacher, run.vq.quantizer.codebook, accelerator.device
    scaling = _plain(accelerator, model).config.scaling_factor  # a loaded DiT keeps the one it was trained with
    bar = tqdm(total=args.steps, initial=run.start_step, disable=not accelerator.is_main_process, desc="generator")
    t0, step, running = time.time() - trained_s, run.start_step, []
    model.train()
    for _ in stoppable(range(step, args.steps)):
        # Every process draws the same global batch (N processes x B) from the same stream, as it draws noise and
        # timesteps, and trains on its slice: N processes train as one with batch N*B would (the same draws).
        n, i, b = accelerator.num_processes, accelerator.process_index, args.batch_size
        mine = slice(i * b, (i + 1) * b)
        batch = draw_batch(run.data, codebook, scaling, n * b, args.caption_dropout, run.gen)
        noise = torch.randn(batch.latents.shape, generator=run.gen)
        t = torch.randint(0, run.noise_scheduler.config.num_train_timesteps, (n * b,), generator=run.gen)
        latents, ids, states, masks, noise, t = (x[mine] for x in (*batch, noise, t))
        cells = None if args.object_loss_weight == 1 else object_cell_weights(ids, args.object_loss_weight)
        inputs = (latents, noise, t, states, masks)
        loss = diffusion_loss(model, run.noise_scheduler, *inputs, cell_weights=cells, device=device, teacher=teacher)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.ema.step(model.parameters())
        step += 1
        running.append(accelerator.reduce(loss.detach(), "mean").item())  # the global batch's loss
        bar.update(1)

        if step % args.log_every == 0 or step == args.steps:
            mean, running = round(sum(running) / len(running), 5), []
            bar.set_postfix(loss=mean)
            if accelerator.is_main_process:
                lr, elapsed = run.lr_scheduler.get_last_lr()[0], round(time.time() - t0, 1)
                append_log(log_path, {"step": step, "loss": mean, "lr": lr, "elapsed_s": elapsed})
        if accelerator.is_main_process and (step % args.val_every == 0 or step == args.steps):
            validate(_plain(accelerator, model), run, out, step)
        if accelerator.is_main_process and step % args.checkpoint_every == 0 and step < args.steps:
            _save_checkpoint(_plain(accelerator, model), run, step, out)
        if step < args.steps:  # Ctrl-C or SIGTERM: this step's checkpoint, then stop
            checkpoint = partial(_save_checkpoint, _plain(accelerator, model), run, step, out)
            stop_if_asked(step, args.checkpoint_every, out, checkpoint, accelerator)
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema_model = _ema_model(_plain(accelerator, model), run.ema)
        with saving_model(out / "transformer"):
            ema_model.save_pretrained(out / "transformer")
        DPMSolverMultistepScheduler.from_config(run.noise_scheduler.config).save_pretrained(out / "scheduler")
        append_log(log_path, {"done": True, "steps": step, "train_time_s": round(time.time() - t0, 1)})
        accelerator.print(f"saved {out / 'transformer'} after {step} steps in {time.time() - t0:.0f} s")
    return out


def main(args: argparse.Namespace) -> Path:
    """`train(args)`, or with --recipe every generator stage of the recipe, each published into its model."""
    with graceful_stop():
        if args.recipe:
            return run_recipe(args, "generator", add_arguments, train)
        return train(args)


def _plain(accelerator: Accelerator, model) -> DiT:
    """The DiT itself: without accelerate's wrappers nor torch.compile's (whose state dict keys differ)."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def _ema_model(model: DiT, ema: EMAModel) -> DiT:
    """A copy of the model holding the EMA weights."""
    copy = DiT.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    ema.copy_to(copy.parameters())
    return copy.eval()


def validation_prompts(data: str) -> list[str]:
    """What the samples show: VALIDATION_PROMPTS for shapes-v1, else the first caption of 8 images spread over
    the folder (its own captions: shapes prompts mean nothing to a model of your images)."""
    if data == "shapes":
        return VALIDATION_PROMPTS
    folder = ImageFolder(data, captions_required=True)
    picks = np.linspace(0, len(folder.paths) - 1, num=min(8, len(folder.paths))).round().astype(int)
    return [folder.captions[i][0][:MAX_PROMPT_CHARS] for i in picks]  # a long caption trains, cut as a prompt


@torch.no_grad()
def validate(model: DiT, run: Run, out: Path, step: int) -> None:
    """A grid of the EMA model's samples for `run.sample_prompts`: `OUT/samples/step-N.png`, and the prompts, in
    the grid's order (row by row), in `OUT/samples/prompts.txt`."""
    pipe = MMGenPipeline(
        vqvae=run.vq,
        transformer=_ema_model(model, run.ema),
        text_encoder=run.text_encoder,
        tokenizer=run.tokenizer,
        scheduler=DPMSolverMultistepScheduler.from_config(run.noise_scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        run.sample_prompts,
        num_inference_steps=20,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images  # (N, 3, H, W) in [0, 1]
    (out / "samples").mkdir(exist_ok=True)
    image_grid(images * 2 - 1, rows=2).save(out / "samples" / f"step-{step}.png")
    (out / "samples" / "prompts.txt").write_text("".join(f"{prompt}\n" for prompt in run.sample_prompts))


def _save_checkpoint(model: DiT, run: Run, step: int, out: Path, keep: int = 2) -> None:
    with writing_checkpoint(out, step, keep) as ckpt:
        model.save_pretrained(ckpt / "transformer")
        torch.save(run.ema.state_dict(), ckpt / "ema.pt")
        save_training_state(ckpt, run.optimizer, run.lr_scheduler, step, run.gen)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options; their defaults are the first stage of `recipes/mmgen-base-64.toml` (less the machine choices:
    --mixed-precision, --compile)."""
    p.add_argument(
        "--recipe",
        default=None,
        metavar="FILE",
        help="run every generator stage of a recipe (e.g. recipes/mmgen-base-64.toml), each published into its "
        "model folder; finished stages are skipped and an interrupted one resumes",
    )
    p.add_argument("--out", default="runs/generator", help="the run's folder: checkpoints, log, trained weights")
    p.add_argument(
        "--vqvae",
        default="assets/mmgen-base-64",
        help="the frozen tokenizer: a model or run folder holding vqvae/, or that vqvae/ itself",
    )
    p.add_argument("--data", default="shapes", help="'shapes' or a folder of images with metadata.jsonl captions")
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="training images encoded up front (default: 60,000 shapes-v1 scenes; of a folder, 10 crops of each "
        "image, at most 60,000)",
    )
    p.add_argument(
        "--preset", choices=sorted(DIT_PRESETS), help=f"the size of a new DiT (default: {NEW_DIT['preset']})"
    )
    p.add_argument("--sample-size", type=int, default=16, help="latent grid side (16: 64 px at f4, 128 px at f8)")
    p.add_argument(
        "--text-refiner-layers",
        type=int,
        help="a new DiT's trainable transformer layers over the text encoder's states (0: a linear map; default: "
        f"{NEW_DIT['text_refiner_layers']})",
    )
    add_run_arguments(
        p, steps=13_000, batch_size=64, lr=1e-3, warmup_steps=250, log_every=50, val_every=1000, checkpoint_every=1000
    )
    p.add_argument("--caption-dropout", type=float, default=0.1, help="share of empty prompts (for guidance)")
    p.add_argument(
        "--object-loss-weight",
        type=float,
        default=4.0,
        help="weight of latent cells whose code is not the image's most common one (its background), "
        "relative to the others; each image's total weight is kept (1: the plain mean)",
    )
    p.add_argument("--ema-decay", type=float, default=0.999, help="decay of the weights' moving average, which ships")
    p.add_argument(
        "--data-seed",
        type=count(0),
        default=None,
        help="the shapes-v1 stream of the training scenes, or a folder's crops (default: --seed)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from the DiT in MODEL/transformer (a run or model folder) instead of random weights: "
        "a second, fine-tuning stage with its own steps and learning rate",
    )
    p.add_argument(
        "--grow-depth",
        type=int,
        default=None,
        metavar="N",
        help="with --init-from: deepen its DiT to N blocks (up to twice as many), inserting zero-gated copies of "
        "its blocks, so training starts from exactly the model it had",
    )
    p.add_argument(
        "--distill-depth",
        type=int,
        default=None,
        metavar="N",
        help="with --init-from: distil its DiT into N of its blocks (at least half), a faster DiT: the student "
        "starts as it without the blocks --grow-depth would have inserted, and learns its predictions",
    )
    p.add_argument(
        "--cache-dir",
        default=os.environ.get("MMGEN_CACHE", "~/.cache/mmgen"),
        help="where the encoded training set is kept and reused ('' to encode every time; default "
        "$MMGEN_CACHE or ~/.cache/mmgen)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the DiT: ~1.14x faster steps on a 2-core CPU, ~1 min to compile",
    )
    return p


if __name__ == "__main__":
    main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
