"""Train the text-conditioned DiT in the frozen tokenizer's latent space (shapes-v1 by default, or your folder).

    mmgen train-generator --out runs/generator                       # shapes-v1, CPU
    mmgen train-generator --data my_images/ --out runs/mine          # imagefolder with metadata.jsonl captions
    accelerate launch -m mmgen.cli train-generator --out runs/generator --batch-size 256
    mmgen train-generator --out runs/generator --resume
    mmgen train-generator --out runs/stage2 --init-from runs/generator --steps 2000 --lr 2e-4  # a second stage

Before the loop, the training set is encoded once: images -> token ids with the frozen tokenizer, captions ->
MiniLM states (each distinct caption once), and cached on disk (`--cache-dir`) for the next run on the same
data. Latents are the ids' code vectors times `scaling_factor`, the
factor that brings them to unit variance. Captions are replaced by the empty prompt with probability
`--caption-dropout`, which teaches the null condition used by classifier-free guidance. EMA weights (diffusers
`EMAModel`) are what gets saved and sampled. Writes `OUT/transformer/`, `OUT/scheduler/`,
`OUT/checkpoints/step-N/`, validation grids `OUT/samples/step-N.png` and `OUT/train_log.jsonl`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel, compute_snr
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data.images import ImageFolder, pil_to_tensor
from ..data.shapes import shapes_sample
from ..models.dit import DIT_PRESETS, DiT
from ..models.text_encoder import MAX_TOKENS, encode_text, load_text_encoder
from ..models.vqvae import VQVAE
from ..pipeline import MMGenPipeline
from ..viz import image_grid
from .checkpoints import (
    append_log,
    latest_checkpoint,
    load_training_state,
    prune_checkpoints,
    save_training_state,
    start_log,
)
from .grounding import GroundingTargets, grounding_loss, shapes_grounding

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


def training_scheduler(prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The forward process: 1000 steps, cosine schedule (Nichol & Dhariwal 2021), v-prediction by default.

    `timestep_spacing="leading"` is passed explicitly so every scheduler made from this config inherits it
    (diffusers' from_config drops values left at their default): samplers then start at t = 1000 - 1000/N
    (e.g. 950 for 20 steps), not t = 999. Under the cosine schedule alpha_bar(999) = 2.4e-9, so turning an
    epsilon prediction into x0 there divides by sqrt(alpha_bar) = 5e-5 and solvers that do (DPM-Solver++,
    UniPC, Euler) blow small errors up into noisy images; alpha_bar(950) = 5.8e-3 is safe.
    """
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        clip_sample=False,
        timestep_spacing="leading",
    )


@torch.no_grad()
def encode_dataset(
    vq: VQVAE, tokenizer, text_encoder, images: list[torch.Tensor], captions: list[str], batch_size: int = 256
) -> dict:
    """Token ids (N, h, w) of every image, and MiniLM states of every distinct caption (plus the empty one)."""
    ids = torch.cat(
        [vq.encode(torch.stack(images[i : i + batch_size])).indices for i in range(0, len(images), batch_size)]
    )
    vocab = [""] + sorted(set(captions) - {""}, key=lambda c: (len(c), c))  # similar lengths batch together
    index = {c: k for k, c in enumerate(vocab)}
    states, masks = zip(
        *[encode_text(tokenizer, text_encoder, vocab[i : i + batch_size]) for i in range(0, len(vocab), batch_size)]
    )
    return {
        "ids": ids.to(torch.int16),
        "caption_index": torch.tensor([index[c] for c in captions]),
        "text_states": torch.cat(states).half(),
        "text_masks": torch.cat(masks).bool(),
    }


LOSS_WEIGHTINGS = ("min-snr", "min-snr-1")


def loss_weights(noise_scheduler, t: torch.Tensor, snr_gamma: float = 5.0, weighting: str = "min-snr-1"):
    """Per-sample weights on the loss of the scheduler's target (epsilon or v), written in x0 space: the x0 error
    counts w(SNR) times, and a v error is an x0 error divided by (SNR + 1), an epsilon error one divided by SNR.

    - "min-snr": w = min(SNR, gamma) (Min-SNR-gamma, Hang et al. 2023, https://arxiv.org/abs/2303.09556).
      At high noise w ~ SNR -> 0: on v that is a weight of about SNR, 0.02 at t = 900.
    - "min-snr-1": w = min(SNR + 1, gamma), only for v: the plain v loss (weight 1) up to SNR = gamma - 1, then
      Min-SNR's cap on the easy low-noise steps. High noise is where a scene's coarse facts are decided
      (background, how many objects and where), and "min-snr" gives it almost no weight there.
    `snr_gamma=0`: no weighting, the plain loss on the target."""
    if not snr_gamma:
        return torch.ones(t.shape)
    v_pred = noise_scheduler.config.prediction_type == "v_prediction"
    snr = compute_snr(noise_scheduler, t)
    if weighting == "min-snr":
        return snr.clamp(max=snr_gamma) / (snr + 1 if v_pred else snr)
    if weighting == "min-snr-1":
        if not v_pred:
            raise ValueError("the min-snr-1 weighting is for v-prediction; with epsilon use --loss-weighting min-snr")
        return (snr + 1).clamp(max=snr_gamma) / (snr + 1)
    raise ValueError(f"unknown loss weighting {weighting!r}; choose from {', '.join(LOSS_WEIGHTINGS)}")


TIMESTEP_SAMPLINGS = ("uniform", "logit-normal", "high-noise")


def sample_timesteps(n: int, num_train_timesteps: int, how: str = "uniform", generator=None) -> torch.Tensor:
    """Training timesteps for a batch of n.

    - "uniform": every t in 0..T-1 equally often (DDPM; the draw runs 1 to 10 used).
    - "logit-normal": t / T = sigmoid(z), z ~ N(0, 1) (Esser et al. 2024, https://arxiv.org/abs/2403.03206):
      most draws in the middle of the schedule (73 % between T/4 and 3T/4, against 50 %), fewer on the nearly
      clean and nearly pure-noise ends. It changes where the training compute goes; the loss weighting
      (`loss_weights`) still applies on top.
    - "high-noise": the uniform draw, with every second sample moved into the noisiest quarter (t -> 3T/4 + t/4):
      62.5 % of the draws in [3T/4, T) against 25 %. That is where a scene's layout is decided (how many objects
      and where; see the card's duplicates entry). It consumes the generator exactly as "uniform" does, so a run
      with it sees the same batches and noise as one without, and half of its timesteps are the same."""
    if how in ("uniform", "high-noise"):
        t = torch.randint(0, num_train_timesteps, (n,), generator=generator)
        if how == "high-noise":
            t[1::2] = num_train_timesteps - num_train_timesteps // 4 + t[1::2] // 4
        return t
    if how == "logit-normal":
        u = torch.sigmoid(torch.randn(n, generator=generator))
        return (u * num_train_timesteps).long().clamp(max=num_train_timesteps - 1)
    raise ValueError(f"unknown timestep sampling {how!r}; choose from {', '.join(TIMESTEP_SAMPLINGS)}")


def diffusion_loss(
    model,
    noise_scheduler,
    latents,
    noise,
    t,
    text_states,
    text_masks,
    snr_gamma: float = 5.0,
    weighting: str = "min-snr-1",
    device="cpu",
    self_condition: bool = False,
    cell_weights: torch.Tensor | None = None,
    grounding: tuple[GroundingTargets, torch.Tensor] | None = None,
    grounding_weight: float = 0.0,
    parts: dict | None = None,
) -> torch.Tensor:
    """The denoising loss on clean `latents`: noise them to `t`, predict the scheduler's target (epsilon or v),
    weight each sample by `loss_weights` and, if given, each latent cell by `cell_weights` (B, 1, h, w; see
    `object_cell_weights`).

    `self_condition` (Analog Bits, Chen et al. 2022): the first half of the batch is denoised once without
    gradients and its clean-latent estimate goes back in as `self_cond`; the second half gets none (zeros),
    as at a sampler's first step. A fixed half keeps shapes static for torch.compile.

    `grounding` (the batch's `GroundingTargets`, and which captions were kept rather than dropped): adds
    `grounding_weight` times the token grounding loss on the model's cross-attention maps
    (`mmgen.training.grounding`). `parts`, if given, receives that term alone under "grounding"."""
    noisy = noise_scheduler.add_noise(latents, noise, t).to(device)
    t_in, text_states, text_masks = t.to(device), text_states.to(device), text_masks.to(device)
    extra = {}
    if self_condition:
        half = latents.shape[0] // 2
        self_cond = torch.zeros_like(noisy)
        with torch.no_grad():
            out = model(noisy[:half], t_in[:half], text_states[:half], text_masks[:half], self_cond=self_cond[:half])
        self_cond[:half] = clean_estimate(noise_scheduler, noisy[:half], out.sample.float(), t_in[:half])
        extra["self_cond"] = self_cond
    if grounding is not None:  # only then: a model without the option (or a test's stand-in) still takes the call
        extra["return_cross_attention"] = True
    out = model(noisy, t_in, text_states, text_masks, **extra)
    pred = out.sample
    v_pred = noise_scheduler.config.prediction_type == "v_prediction"
    target = noise_scheduler.get_velocity(latents, noise, t) if v_pred else noise
    loss = F.mse_loss(pred.float(), target.to(device), reduction="none")
    if cell_weights is not None:
        loss = loss * cell_weights.to(device)
    loss = loss.mean(dim=(1, 2, 3))
    loss = (loss * loss_weights(noise_scheduler, t, snr_gamma, weighting).to(device)).mean()
    if grounding is None:
        return loss
    ground = grounding_loss(out.cross_attention.float(), grounding[0], grounding[1].to(device))
    if parts is not None:
        parts["grounding"] = ground.detach()
    return loss + grounding_weight * ground


def object_cell_weights(ids: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Per-cell loss weights (B, 1, h, w) from token grids `ids` (B, h, w): cells whose code is not the image's
    most common one (its flat background, in shapes-v1) weigh `object_weight` times as much as the others,
    normalised to mean 1 per image so that each image's total weight (and `loss_weights`) is unchanged.

    A small shape covers 16 of 256 cells, so in the plain mean its shape is a few percent of the loss while
    the background, right early on, is most of it. `object_weight=1` gives the plain mean."""
    if object_weight <= 0:
        raise ValueError(f"--object-loss-weight must be positive, got {object_weight}")
    background = ids.flatten(1).mode(dim=1).values
    w = torch.where(ids != background[:, None, None], float(object_weight), 1.0)
    return (w / w.mean(dim=(1, 2), keepdim=True)).unsqueeze(1)


def clean_estimate(noise_scheduler, noisy: torch.Tensor, pred: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 from the model's output at per-sample timesteps t (x_t = sqrt(a) x0 + sqrt(1 - a) eps): the training
    scheduler's batched form of `pipeline.predict_x0`, which takes one sampling timestep."""
    a = noise_scheduler.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1)
    if noise_scheduler.config.prediction_type == "v_prediction":  # v = sqrt(a) eps - sqrt(1 - a) x0
        return a.sqrt() * noisy - (1 - a).sqrt() * pred
    return (noisy - (1 - a).sqrt() * pred) / a.sqrt()


def load_training_set(args, vq: VQVAE, tokenizer, text_encoder) -> dict:
    image_size = args.sample_size * vq.downsample_factor
    if args.data == "shapes":
        samples = [shapes_sample(data_seed(args), i) for i in range(args.num_samples)]
        images, captions = [pil_to_tensor(s.image) for s in samples], [s.caption for s in samples]
        num_objects = torch.tensor([len(s.labels["objects"]) for s in samples])
    else:
        folder = ImageFolder(args.data, length=args.num_samples, size=image_size, seed=data_seed(args))
        items = [folder[i] for i in range(len(folder))]
        images, captions = [it["pixel_values"] for it in items], [it["text"] for it in items]
        num_objects = None
    return {**encode_dataset(vq, tokenizer, text_encoder, images, captions), "num_objects": num_objects}


def cache_key(args, vq: VQVAE, text_encoder) -> str:
    """What the encoded training set depends on: the data (shapes-v1's seed and count, or the folder's files), the
    image size, the tokenizer's weights and the text encoder. Any change gives another key, so a stale cache is
    never read."""
    h = hashlib.sha256()
    for name, tensor in sorted(vq.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    if args.data == "shapes":
        data = ["shapes-v1"]
    else:  # the folder's files; the seed picks the crops
        files = sorted(p for p in Path(args.data).rglob("*") if p.is_file())
        data = [str(Path(args.data).resolve()), [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]]
    h.update(
        json.dumps(
            [
                data,
                data_seed(args),
                args.num_samples,
                args.sample_size * vq.downsample_factor,
                text_encoder.name_or_path,
                MAX_TOKENS,
            ]
        ).encode()
    )
    return h.hexdigest()[:16]


def cached_training_set(args, vq: VQVAE, tokenizer, text_encoder) -> dict:
    """`load_training_set`, read from `--cache-dir` when this exact set was encoded before (a resumed run, a second
    stage, another recipe on the same data skip the minutes of encoding), else encoded and written there."""
    if not args.cache_dir:
        return load_training_set(args, vq, tokenizer, text_encoder)
    path = Path(args.cache_dir).expanduser() / f"encoded-{cache_key(args, vq, text_encoder)}.safetensors"
    if path.exists():
        data = load_file(path)
        states = data.pop("text_states")  # stored up to the longest caption; padded back to MAX_TOKENS
        data["text_states"] = F.pad(states, (0, 0, 0, MAX_TOKENS - states.shape[1]))
        data["text_masks"] = F.pad(data["text_masks"], (0, MAX_TOKENS - states.shape[1]))
        data.setdefault("num_objects", None)
        print(f"read the encoded training set from {path}")
        return data
    data = load_training_set(args, vq, tokenizer, text_encoder)
    longest = int(data["text_masks"].sum(1).max())
    tensors = {k: v.contiguous() for k, v in data.items() if v is not None}
    tensors["text_states"] = data["text_states"][:, :longest].contiguous()
    tensors["text_masks"] = data["text_masks"][:, :longest].contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # a run killed while writing leaves no half file behind
    save_file(tensors, partial)
    partial.rename(path)
    print(f"cached the encoded training set in {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return data


def data_seed(args) -> int:
    """The shapes-v1 stream (or a folder's crops): `--data-seed`, else `--seed` (as before the option existed)."""
    return args.seed if args.data_seed is None else args.data_seed


def sampling_weights(num_objects: torch.Tensor, two_object_share: float) -> torch.Tensor:
    """Per-scene weights for drawing batches so that two-object scenes make up `two_object_share` of them
    (shapes-v1 has about 40 %); within each group every scene is equally likely."""
    two = num_objects == 2
    if not 0.0 < two_object_share < 1.0 or not two.any() or two.all():
        raise ValueError(
            f"--two-object-share needs a share strictly between 0 and 1 and scenes of both kinds, "
            f"got {two_object_share} over {int(two.sum())} two-object scenes of {len(two)}"
        )
    return torch.where(two, two_object_share / two.sum(), (1 - two_object_share) / (~two).sum())


def initial_weights(model: str, vq: VQVAE, text_encoder, sample_size: int) -> DiT:
    """The DiT of a trained run or model folder (`MODEL/transformer/`, a local path or a Hub id), in float32, to
    train further: its architecture and scaling factor come with it, so --preset, the text refiner's options and
    --self-condition do not apply. It must fit this tokenizer's codes and this text encoder."""
    try:
        dit = DiT.from_pretrained(model, subfolder="transformer", dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ValueError(f"--init-from {model}: no DiT found in {model}/transformer ({e})") from e
    want = {"in_channels": vq.config.code_dim, "text_dim": text_encoder.config.hidden_size, "sample_size": sample_size}
    got = {k: dit.config[k] for k in want}
    if got != want:
        raise ValueError(
            f"--init-from {model}: its DiT takes {got}, but this tokenizer, text encoder and --sample-size give {want}"
        )
    return dit


def previous_log(model: str | None) -> list[str]:
    """The training log of the run or model folder an --init-from run starts from (a run's `train_log.jsonl`,
    a model folder's `generator_train_log.jsonl`), so the new log tells the whole story; none for a Hub id."""
    for name in ("train_log.jsonl", "generator_train_log.jsonl"):
        if model and (Path(model) / name).is_file():
            return (Path(model) / name).read_text().splitlines()
    return []


def latent_scaling_factor(vq: VQVAE, ids: torch.Tensor) -> float:
    """1 / std of the code vectors over the training set, so the diffused latents have unit variance."""
    return float(1.0 / vq.quantizer.indices_to_codes(ids[:4096].long()).std())


def main(args: argparse.Namespace) -> Path:
    accelerator = Accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    loss_weights(
        training_scheduler(args.prediction_type), torch.zeros(1, dtype=torch.long), args.snr_gamma, args.loss_weighting
    )  # a bad combination fails here, before minutes of encoding
    if args.two_object_share is not None:
        if args.data != "shapes":
            raise ValueError("--two-object-share needs the shapes-v1 labels; it does not apply to an image folder")
        sampling_weights(torch.tensor([1, 2]), args.two_object_share)  # a bad share fails here too
    object_cell_weights(torch.zeros(1, 1, 1, dtype=torch.long), args.object_loss_weight)  # and a bad weight
    if args.grounding_loss_weight < 0:
        raise ValueError(f"--grounding-loss-weight must be 0 (off) or positive, got {args.grounding_loss_weight}")
    if args.grounding_loss_weight and args.data != "shapes":
        raise ValueError("--grounding-loss-weight needs the shapes-v1 labels; it does not apply to an image folder")
    if args.grounding_loss_weight and args.joint_attention:
        raise ValueError("--grounding-loss-weight reads cross-attention maps; it does not apply to --joint-attention")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    vq = VQVAE.from_pretrained(args.vqvae, subfolder="vqvae", dtype=torch.float32).eval().requires_grad_(False)
    tokenizer, text_encoder = load_text_encoder()
    # a bad --init-from fails here, before minutes of encoding
    init = initial_weights(args.init_from, vq, text_encoder, args.sample_size) if args.init_from else None
    t0 = time.time()
    data = cached_training_set(args, vq, tokenizer, text_encoder)
    encoding_s = round(time.time() - t0, 1)  # logged: a rebuild's time is its stages' training plus this
    accelerator.print(
        f"{len(data['ids'])} encoded images and {len(data['text_states'])} distinct captions "
        f"ready in {encoding_s:.0f} s"
    )
    scaling = latent_scaling_factor(vq, data["ids"])

    ckpt = latest_checkpoint(out) if args.resume else None
    if ckpt:
        model = DiT.from_pretrained(ckpt / "transformer")
    elif init is not None:
        model = init
    else:
        model = DiT(
            sample_size=args.sample_size,
            in_channels=vq.config.code_dim,
            scaling_factor=scaling,
            text_dim=text_encoder.config.hidden_size,
            text_refiner_layers=args.text_refiner_layers,
            max_text_tokens=MAX_TOKENS,
            joint_attention=args.joint_attention,
            self_condition=args.self_condition,
            **DIT_PRESETS[args.preset],
        )
    scaling = model.config.scaling_factor  # a loaded DiT keeps the one it was trained with
    grounding = None
    if args.grounding_loss_weight:
        if model.config.joint_attention:
            raise ValueError("--grounding-loss-weight reads cross-attention maps; this DiT uses joint attention")
        grid = model.config.sample_size // model.config.patch_size
        grounding = shapes_grounding(data_seed(args), len(data["ids"]), tokenizer, grid, MAX_TOKENS)
    self_condition = model.config.self_condition  # likewise: a loaded DiT's own setting, not the flag
    ema = EMAModel(model.parameters(), decay=args.ema_decay, model_cls=DiT, model_config=model.config)
    if args.compile:  # same parameters, fused kernels; unwrap_model gives back the plain DiT for saving
        model = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.steps)
    noise_scheduler = training_scheduler(args.prediction_type)
    start_step = 0
    # Batches, caption dropout, noise and timesteps: one stream per process, so each draws its own batches.
    gen = torch.Generator().manual_seed(args.seed * 1000 + 7919 * accelerator.process_index)
    if ckpt:
        ema.load_state_dict(torch.load(ckpt / "ema.pt", weights_only=True))
        # the checkpoint holds the main process's stream; the others reseed with their own seed + step
        start_step = load_training_state(ckpt, optimizer, lr_scheduler, gen, accelerator.is_main_process)
        accelerator.print(f"resumed from {ckpt} at step {start_step}")
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema.to(accelerator.device)

    log_path = out / "train_log.jsonl"
    if accelerator.is_main_process and start_step == 0:
        start_log(
            log_path,
            args,
            previous=previous_log(args.init_from),
            scaling_factor=scaling,
            distinct_captions=len(data["text_states"]),
            encoding_s=encoding_s,
        )

    ids, cap_idx = data["ids"], data["caption_index"]
    states, masks = data["text_states"], data["text_masks"]
    if args.joint_attention:  # it pays per text token: drop the columns that are padding in every caption (one
        longest = int(masks.sum(1).max())  # length for the whole run keeps shapes static for torch.compile)
        states, masks = states[:, :longest], masks[:, :longest]
    codebook = vq.quantizer.codebook
    weights = None if args.two_object_share is None else sampling_weights(data["num_objects"], args.two_object_share)
    bar = tqdm(total=args.steps, initial=start_step, disable=not accelerator.is_main_process, desc="generator")
    t0, step, running, running_ground = time.time(), start_step, [], []
    model.train()
    while step < args.steps:
        # Each process draws its own batch from its own stream (gen): sharding by seed, no sampler needed.
        if weights is None:
            pick = torch.randint(0, len(ids), (args.batch_size,), generator=gen)
        else:
            pick = torch.multinomial(weights, args.batch_size, replacement=True, generator=gen)
        caption = cap_idx[pick].clone()
        caption[torch.rand(args.batch_size, generator=gen) < args.caption_dropout] = 0  # 0 = the empty prompt
        batch_ids = ids[pick].long()
        latents = F.embedding(batch_ids, codebook).permute(0, 3, 1, 2) * scaling  # (B, C, h, w)
        noise = torch.randn(latents.shape, generator=gen)
        t = sample_timesteps(args.batch_size, noise_scheduler.config.num_train_timesteps, args.timestep_sampling, gen)
        cells = None if args.object_loss_weight == 1 else object_cell_weights(batch_ids, args.object_loss_weight)
        parts = {}
        loss = diffusion_loss(
            model,
            noise_scheduler,
            latents,
            noise,
            t,
            states[caption].float(),
            masks[caption],
            args.snr_gamma,
            args.loss_weighting,
            accelerator.device,
            self_condition,
            cells,
            None if grounding is None else (grounding[pick], caption != 0),
            args.grounding_loss_weight,
            parts,
        )
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(model.parameters())
        step += 1
        running.append(loss.item())
        if "grounding" in parts:
            running_ground.append(parts["grounding"].item())
        bar.update(1)

        if step % args.log_every == 0 or step == args.steps:
            stats = {
                "step": step,
                "loss": round(sum(running) / len(running), 5),
                "lr": lr_scheduler.get_last_lr()[0],
                "elapsed_s": round(time.time() - t0, 1),
            }
            if running_ground:  # the grounding term alone (included in "loss")
                stats["grounding"] = round(sum(running_ground) / len(running_ground), 5)
            running, running_ground = [], []
            bar.set_postfix(loss=stats["loss"])
            if accelerator.is_main_process:
                append_log(log_path, stats)
        if accelerator.is_main_process and (step % args.val_every == 0 or step == args.steps):
            validate(_plain(accelerator, model), ema, vq, tokenizer, text_encoder, noise_scheduler, out, step)
        if accelerator.is_main_process and step % args.checkpoint_every == 0 and step < args.steps:
            _save_checkpoint(_plain(accelerator, model), ema, optimizer, lr_scheduler, step, out, gen)
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = _ema_model(_plain(accelerator, model), ema)
        final.save_pretrained(out / "transformer")
        DPMSolverMultistepScheduler.from_config(noise_scheduler.config).save_pretrained(out / "scheduler")
        append_log(log_path, {"done": True, "steps": step, "train_time_s": round(time.time() - t0, 1)})
        accelerator.print(f"saved {out / 'transformer'} after {step} steps in {time.time() - t0:.0f} s")
    return out


def _plain(accelerator: Accelerator, model) -> DiT:
    """The DiT itself: without accelerate's wrappers nor torch.compile's (whose state dict keys differ)."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def _ema_model(model: DiT, ema: EMAModel) -> DiT:
    """A copy of the model holding the EMA weights."""
    copy = DiT.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    ema.copy_to(copy.parameters())
    return copy.eval()


@torch.no_grad()
def validate(model, ema, vq, tokenizer, text_encoder, noise_scheduler, out: Path, step: int) -> None:
    pipe = MMGenPipeline(
        vqvae=vq,
        transformer=_ema_model(model, ema),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=DPMSolverMultistepScheduler.from_config(noise_scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        VALIDATION_PROMPTS, num_inference_steps=20, generator=torch.Generator().manual_seed(0), output_type="pt"
    ).images
    (out / "samples").mkdir(exist_ok=True)
    image_grid(images, rows=2).save(out / "samples" / f"step-{step}.png")


def _save_checkpoint(
    model, ema, optimizer, scheduler, step: int, out: Path, gen: torch.Generator, keep: int = 2
) -> None:
    ckpt = out / "checkpoints" / f"step-{step}"
    model.save_pretrained(ckpt / "transformer")
    torch.save(ema.state_dict(), ckpt / "ema.pt")
    save_training_state(ckpt, optimizer, scheduler, step, gen)
    prune_checkpoints(out, keep)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", default="runs/generator")
    p.add_argument("--vqvae", default="assets/mmgen-base", help="model folder holding the frozen vqvae/")
    p.add_argument("--data", default="shapes", help="'shapes' or a folder of images with metadata.jsonl captions")
    p.add_argument("--num-samples", type=int, default=60_000, help="training images encoded up front")
    p.add_argument(
        "--two-object-share",
        type=float,
        default=None,
        help="shapes-v1 only: draw batches with this share of two-object scenes (default: as the dataset, about 0.4)",
    )
    p.add_argument("--preset", default="XS/2", choices=sorted(DIT_PRESETS))
    p.add_argument("--sample-size", type=int, default=16, help="latent grid side (64x64 images with f=4)")
    p.add_argument(
        "--text-refiner-layers",
        type=int,
        default=2,
        help="trainable transformer layers over the text encoder's states (0: a linear map)",
    )
    p.add_argument(
        "--joint-attention",
        action="store_true",
        help="MM-DiT blocks: text and image attend jointly, in place of cross-attention",
    )
    p.add_argument(
        "--self-condition",
        action="store_true",
        help="a new DiT that also reads its previous clean-latent estimate (Analog Bits self-conditioning; "
        "with --init-from, the loaded DiT's own setting applies)",
    )
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=250)
    p.add_argument("--caption-dropout", type=float, default=0.1, help="share of empty prompts (for guidance)")
    p.add_argument(
        "--prediction-type",
        default="v_prediction",
        choices=["v_prediction", "epsilon"],
        help="what the DiT predicts (saved in the run's scheduler config)",
    )
    p.add_argument("--snr-gamma", type=float, default=5.0, help="the loss weighting's cap; 0 for plain MSE")
    p.add_argument(
        "--loss-weighting",
        default="min-snr-1",
        choices=LOSS_WEIGHTINGS,
        help="x0 weight min(SNR, gamma) or min(SNR + 1, gamma) (v only; see loss_weights)",
    )
    p.add_argument(
        "--object-loss-weight",
        type=float,
        default=1.0,
        help="weight of latent cells whose code is not the image's most common one (its background), "
        "relative to the others; each image's total weight is kept (1: the plain mean)",
    )
    p.add_argument(
        "--grounding-loss-weight",
        type=float,
        default=0.0,
        help="shapes-v1 only: add this weight times a token grounding loss that pulls each object's "
        "colour and shape words' cross-attention onto that object's patches (TokenCompose; "
        "see mmgen/training/grounding.py; 0: off)",
    )
    p.add_argument(
        "--timestep-sampling",
        default="uniform",
        choices=TIMESTEP_SAMPLINGS,
        help="how training timesteps are drawn (see sample_timesteps)",
    )
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="the shapes-v1 stream of the training scenes, or a folder's crops (default: --seed)",
    )
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from the DiT in MODEL/transformer (a run or model folder) instead of random weights: "
        "a second, fine-tuning stage with its own steps and learning rate",
    )
    p.add_argument(
        "--cache-dir",
        default=os.environ.get("MMGEN_CACHE", "~/.cache/mmgen"),
        help="where the encoded training set is kept and reused ('' to encode every time; default "
        "$MMGEN_CACHE or ~/.cache/mmgen)",
    )
    p.add_argument(
        "--mixed-precision",
        choices=["no", "bf16", "fp16"],
        default="no",
        help="autocast matmuls and convs (bf16 is ~2.5x faster for the DiT on CPUs with AVX512-BF16)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the DiT: ~1.14x faster steps on a 2-core CPU, ~1 min to compile",
    )
    p.add_argument("--cpu", action="store_true")
    return p


if __name__ == "__main__":
    main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
