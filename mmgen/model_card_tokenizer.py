"""The tokenizer's parts of a model card (`mmgen.model_card`): its use and limits when it ships alone, its training
paragraph (VQ-VAE or VQ-GAN) and its rows of held-out figures against the targets for its downsampling factor."""

from __future__ import annotations

from pathlib import Path


def tokenizer_use(gan: bool, stages: list[dict], measured_photos: bool) -> str:
    """The Intended use section of a tokenizer shipped alone (`gan`: trained against a discriminator; `stages`:
    each training stage's arguments, from its log; `measured_photos`: its evaluation has held-out photos)."""
    from .model_card_origin import shown_name

    rows = " (the *detail kept* and PSNR rows below)" if measured_photos else ""
    folders = list(dict.fromkeys(a["data"] for a in stages if a.get("data", "shapes") != "shapes"))
    if folders:
        named = ", ".join(f"`{shown_name(f)}`" for f in folders)
        before = " (after shapes-v1 scenes)" if any(a.get("data", "shapes") == "shapes" for a in stages) else ""
        little = f"""the images in {named}{before}: it reconstructs images like those best; in others, fine
  detail is redrawn, not kept{rows}."""
    else:
        little = f"""shapes-v1 scenes and crops of scikit-image's 26 sample photos: it reconstructs other
  photos, but fine detail and faces are redrawn, not kept{rows}."""
    text = f"""## Intended use and limits

Made for learning and tinkering: put an image through it in the mmgen app's Tokenizer tab, see its tokens, and
compare it with other tokenizers on the same image. It also serves as the tokenizer of a generator trained on its
latents.

- **Trained on little.** {little}
"""
    if gan:
        text += """- **An adversarial decoder paints.** Where a VQ-VAE blurs, a VQ-GAN draws edges and texture the
  discriminator finds plausible: they need not be the original's pixels, and a briefly trained one leaves thin
  halos and tints along edges.
"""
    return text


def tokenizer_training(out: Path) -> str:
    """The Training section's tokenizer paragraph, one sentence group per stage, from OUT/vqvae_train_log.jsonl
    (empty without one)."""
    from .model_card import _read_jsonl, _stages

    log_path = out / "vqvae_train_log.jsonl"
    if not log_path.exists():
        return ""
    stages = _stages(_read_jsonl(log_path))
    text = " ".join(_stage_text(header, done, i, len(stages)) for i, (header, done) in enumerate(stages, 1))
    return f"**Tokenizer.** {text} Log: `vqvae_train_log.jsonl`.\n"


def global_batch(header: dict) -> str:
    """A stage's batch as it trained, from its log header: `--batch-size` is per process, so under several the
    global batch is batch_size x num_processes, said with both. A log without num_processes (logged since) ran
    one process: the batch as given, as before."""
    size, n = header["args"]["batch_size"], header.get("num_processes", 1)
    return f"{size * n} ({n} processes x {size})" if n > 1 else str(size)


def _stage_text(header: dict, done: dict, i: int, n: int) -> str:
    """What one training stage did: data, steps, optimizer, the discriminator's part, time."""
    from .model_card import _minutes
    from .model_card_origin import shown_name

    args = header["args"]
    if args.get("data", "shapes") == "shapes":
        data = f"shapes-v1 scenes (stream {args['seed']})"
        if args.get("photo_fraction", 0) > 0:
            data += f" mixed with random crops of the scikit-image sample photos ({args['photo_fraction']:.0%} photos)"
    else:
        data = f"the images in `{shown_name(args['data'])}`"
    if args.get("shapes_scale"):
        data = data.replace("scenes", f"scenes drawn at {64 * args['shapes_scale']} px", 1)
    trained = (
        "the decoder alone (the encoder and codebook as the stage before left them, so every image's tokens too)"
        if args.get("decoder_only")
        else ""
    )
    gan = ""
    if args.get("adversarial"):
        gan = (
            f" From step {args['disc_start']} on, a PatchGAN discriminator trained in turn (hinge loss), the "
            f"adversarial term at {args['disc_weight']:g} times the adaptive weight (reconstruction over adversarial "
            f"gradient norm at the decoder's last layer), and discriminator feature matching at "
            f"{args['feature_weight']:g} in place of a perceptual loss (no pretrained network)."
        )
    stage = f"Stage {i}: " if n > 1 else ""
    what = f"{trained + ' on ' if trained else ''}{data}"
    what = what if stage else what[0].upper() + what[1:]
    return (
        f"{stage}{what}; {done.get('steps') or args.get('steps')} steps of batch "
        f"{global_batch(header)} at {args['resolution']}x{args['resolution']}, AdamW lr {args['lr']:g} with cosine "
        f"decay, seed {args['seed']}: {_minutes(done.get('train_time_s', 0))}.{gan}"
    )


def _photos(ph: dict) -> str:
    """ "3 photos: " when the views' names say how many photos they were cut from (each whole and crops of it)."""
    photos = {name.rsplit("-", 1)[0] for name in ph.get("per_image_psnr", {})}
    return f"{len(photos)} photos: " if photos else ""


def tokenizer_rows(ev: dict) -> list[str]:
    """The tokenizer's held-out figures against the targets `mmgen eval-tokenizer` checks for its factor. A figure
    added to the evaluation is shown only where its file has it (`if key in ...`, as edges in place): the shipped
    eval_tokenizer.json files predate it, and their cards must still rebuild."""
    from .eval.eval_tokenizer import TARGETS
    from .model_card_generator import row as _row

    sh, ph, cb = ev["shapes"], ev.get("photos"), ev["codebook"]
    f = cb.get("downsample_factor", 4)
    target = {(s, m): t for s, m, t in TARGETS.get(f, [])}
    target |= {("codebook", "perplexity"): cb["num_codes"] / 2} if f == 4 else {}

    def row(component: str, part: str, metric: str, what: str, shown: str, unit: str = "") -> str:
        value, goal = ev[part][metric], target.get((part, metric))
        if goal is None:
            return _row(component, what, shown)
        goal_text = f"{goal:.0%}" if metric == "usage" else f"{goal:g}{unit}"
        return _row(component, what, shown, f">= {goal_text}", value >= goal)

    readable = [sh[f"readable_{a}"] for a in ("color", "size", "position")]
    side = sh.get("size", 64)
    rows = [
        row(
            f"tokenizer: shapes-v1, {sh['n_images']} scenes at {side} px (stream {sh['seed']})",
            "shapes",
            "psnr",
            "PSNR",
            f"{sh['psnr']:.2f} dB",
            " dB",
        ),
        _row("", "SSIM", f"{sh['ssim']:.3f}"),
        _row(
            "",
            "colour / size / position read back",
            " / ".join(f"{r:.1%}" for r in readable),
            "100%",
            min(readable) >= 1,
        ),
        _row(
            "",
            "shape read back (lenient / strict judge)",
            f"{sh['readable_shape']:.1%}"
            + (f" / {sh['readable_shape_strict']:.1%}" if "readable_shape_strict" in sh else ""),
        ),
    ]
    if ph:
        rows += [
            row(
                f"tokenizer: natural photos, {_photos(ph)}{ph['n_images']} views at {ph['size']}x{ph['size']}",
                "photos",
                "psnr",
                "PSNR",
                f"{ph['psnr']:.2f} dB",
                " dB",
            ),
            _row("", "SSIM", f"{ph['ssim']:.3f}"),
        ]
        if "detail_kept" in ph:
            rows.append(row("", "photos", "detail_kept", "detail kept (1 = as sharp)", f"{ph['detail_kept']:.2f}"))
        if "edges_in_place" in ph:
            shown = f"{ph['edges_in_place']:.2f}"
            rows.append(row("", "photos", "edges_in_place", "edges in place (1 = every edge where it was)", shown))
    tokens = f" of {cb['num_codes']:,} over {cb['tokens']:,} tokens" if "tokens" in cb else ""
    rows.append(row("tokenizer: codebook, both sets", "codebook", "usage", "codes used", f"{cb['usage']:.1%}{tokens}"))
    rows.append(row("", "codebook", "perplexity", "perplexity", f"{cb['perplexity']:.0f} of {cb['num_codes']}"))
    return rows
