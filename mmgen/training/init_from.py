"""Training on from a trained DiT (`--init-from`): its weights, whether its latent scaling still holds, the size
options of a new DiT, which a DiT trained further cannot take, and the DiT a run starts from: the trained one,
deepened (`--grow-depth`), or less some blocks with the whole one as its teacher (`--distill-depth`).

    asked = new_dit_options(args)          # the size options given ({} when none), the rest filled in
    dit = initial_weights("assets/mmgen-base-64", vq, text_encoder, sample_size=16, asked=asked)
    init, teacher = starting_dits(args, vq, text_encoder, asked, ckpt, accelerator)  # --grow/--distill-depth too
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..model_paths import model_path
from ..models.dit import DIT_PRESETS, PATCH_SIZE, DiT
from ..models.vqvae import VQVAE
from .deepen import deepen, removal_points, shrink

NEW_DIT = {"preset": "XS/2", "text_refiner_layers": 2}  # what a new DiT is built with unless told


def new_dit_options(args) -> dict:
    """The DiT size the options ask for, by config key ({} when neither --preset nor --text-refiner-layers is
    given); each left out is then set to NEW_DIT's value, which a new DiT is built with and the log records.
    ValueError for a size no DiT can take, before anything loads."""
    for option, what in (("grow_depth", "deepens"), ("distill_depth", "distils")):
        if getattr(args, option) is not None and not args.init_from:
            raise ValueError(f"--{option.replace('_', '-')} {what} a trained DiT: name it with --init-from")
    if args.grow_depth is not None and args.distill_depth is not None:
        raise ValueError("--grow-depth and --distill-depth: one or the other (a stage each)")
    patch = DIT_PRESETS[args.preset or NEW_DIT["preset"]].get("patch_size", PATCH_SIZE)
    if args.sample_size % patch:
        raise ValueError(
            f"--sample-size must be a multiple of {patch} (the DiT reads the latent grid in {patch}x{patch} patches), "
            f"got {args.sample_size}"
        )
    asked = {}
    if args.preset is not None:
        asked |= {"patch_size": PATCH_SIZE} | DIT_PRESETS[args.preset]
    if args.text_refiner_layers is not None:
        asked["text_refiner_layers"] = args.text_refiner_layers
    for key, default in NEW_DIT.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    return asked


def initial_weights(
    model: str, vq: VQVAE, text_encoder, sample_size: int, asked: dict | None = None, new_depth: int | None = None
) -> DiT:
    """The DiT of a trained run or model folder (`MODEL/transformer/`, a local path or a Hub id), in float32, to
    train further. Its architecture and scaling factor come with it (`same_tokenizer` says when the factor is
    measured again): a size `asked` (`new_dit_options`) other than its own is refused, not ignored (its depth
    aside with a `new_depth`, --grow-depth's or --distill-depth's). It must fit this tokenizer's code size and this
    text encoder."""
    try:
        folder = model_path(model, shipped=False)
        if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "transformer", "config.json")):
            raise ValueError("a generator's run or model folder holds one")  # not a DiT built from another config
        dit = DiT.from_pretrained(folder, subfolder="transformer", dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ValueError(f"--init-from {model}: no DiT found in {model}/transformer ({e})") from e
    want = {"in_channels": vq.config.code_dim, "text_dim": text_encoder.config.hidden_size, "sample_size": sample_size}
    got = {k: dit.config[k] for k in want}
    if got != want:
        raise ValueError(
            f"--init-from {model}: its DiT takes {got}, but this tokenizer, text encoder and --sample-size give {want}"
        )
    asked = {k: v for k, v in (asked or {}).items() if not (k == "depth" and new_depth is not None)}
    if differ := [k for k, v in asked.items() if dit.config.get(k) != v]:
        said = ", ".join(f"{k} {dit.config.get(k)} (asked: {asked[k]})" for k in differ)
        raise ValueError(
            f"--init-from {model}: its DiT has {said}; a DiT trained further keeps its size, so leave --preset and "
            "--text-refiner-layers out (--grow-depth deepens it, --distill-depth shrinks it)"
        )
    return dit


def same_tokenizer(model: str, vq: VQVAE) -> bool:
    """Whether the --init-from folder's own tokenizer (`MODEL/vqvae/`) is this tokenizer or a fine-tuned copy of
    it (same design: codebook size, code size, downsampling). A DiT trained on another tokenizer's codes (the 64-px
    model's f4, continued on the f8 VQ-GAN's 128-px latents) keeps its weights but needs this tokenizer's scaling
    factor; a fine-tune (mmgen-emoji's) and a folder without a tokenizer keep theirs."""
    try:
        own = VQVAE.load_config(model, subfolder="vqvae")
    except (OSError, ValueError):
        return True
    keys = ("num_codes", "code_dim", "block_channels")
    return all(tuple(np.ravel(own.get(k))) == tuple(np.ravel(vq.config.get(k))) for k in keys)


def starting_dits(args, vq: VQVAE, text_encoder, asked: dict, ckpt, accelerator) -> tuple[DiT | None, DiT | None]:
    """The DiT a run starts from (None: a new one, or a resumed run's checkpoint, already deepened or shrunk:
    --init-from may hold it by now) and, with --distill-depth, the teacher: the --init-from DiT, frozen, on the
    device under the run's autocast (reloaded when resuming). The student starts as it less some blocks (`shrink`)
    and reads the latents at its scale, so both must know this tokenizer."""
    if not args.init_from or (ckpt and not args.distill_depth):
        return None, None
    dit = initial_weights(
        args.init_from, vq, text_encoder, args.sample_size, asked, args.grow_depth or args.distill_depth
    )
    if args.grow_depth is not None:
        accelerator.print(f"--grow-depth: {args.init_from}'s DiT, {dit.config.depth} -> {args.grow_depth} blocks")
        return deepen(dit, args.grow_depth, source=args.init_from), None
    if args.distill_depth is None:
        return dit, None
    if not same_tokenizer(args.init_from, vq):
        raise ValueError(
            f"--distill-depth: {args.init_from} was trained on another tokenizer; distil it on its own (--vqvae "
            f"{args.init_from})"
        )
    teacher = accelerator.prepare_model(dit.requires_grad_(False).eval(), evaluation_mode=True)
    dropped = ", ".join(map(str, removal_points(dit.config.depth, args.distill_depth)))
    accelerator.print(
        f"--distill-depth: {args.init_from}'s DiT, {dit.config.depth} -> {args.distill_depth} blocks "
        f"(blocks {dropped} dropped), learning its predictions"
    )
    return (None if ckpt else shrink(dit, args.distill_depth, source=args.init_from)), teacher
