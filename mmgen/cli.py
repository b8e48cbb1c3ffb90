"""The `mmgen` command line: one subcommand per task, each a thin wrapper over the package.

    mmgen shapes --n 100 --out data/shapes          # write shapes-v1 samples + metadata.jsonl
    mmgen data emoji --out data/emoji                 # Noto Color Emoji + CLDR names (make emoji-data)
    mmgen encode photo.jpg --out out/               # tokens.json + reconstruction.png, prints PSNR
    mmgen decode out/tokens.json --out image.png
    mmgen encode photo.jpg --out out/ --tokenizer amused/amused-256   # any VQ tokenizer (mmgen/tokenizers.py)
    mmgen compare-tokenizers photo.jpg --tokenizer mmgen-base-64 --tokenizer vqgan-f8   # table + PNG
    mmgen export-hub assets/mmgen-base --out export/   # a folder plain diffusers loads (trust_remote_code)
    mmgen train-tokenizer --out runs/vqvae          # see mmgen/training/train_tokenizer.py
    mmgen train-generator --out runs/generator      # see mmgen/training/train_generator.py
    mmgen eval-tokenizer --model assets/mmgen-base
    mmgen caption image.png                          # image -> text (mmgen/captioning.py)
    mmgen eval-caption --model assets/mmgen-base      # and eval-attention: docs/captioning.md

Bad input (a missing or broken file, a malformed tokens file) ends with a one-line `error:` and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from .data.images import IMAGE_EXTENSIONS, ImageLoadError, check_max_side
from .eval import count

if TYPE_CHECKING:
    from .tokenizers import Tokenizer


def cmd_data(args):
    from .data.emoji import write_emoji

    n = write_emoji(args.out, size=args.size, split=args.split)
    print(f"wrote {n} emoji ({args.split}, {args.size} px) and metadata.jsonl to {args.out}")


def cmd_shapes(args):
    from .data.shapes import write_shapes

    if args.n < 1:
        raise ValueError("--n must be at least 1")
    out = write_shapes(args.out, args.n, seed=args.seed)
    print(f"wrote {args.n} shapes-v1 samples (seed {args.seed}) and metadata.jsonl to {out}")


def cmd_encode(args):
    from .data.images import load_image
    from .tokenizers import load_tokenizer
    from .tokens import default_model, encode_image, save_tokens

    check_max_side(args.max_side)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is a file: give a folder, for its tokens.json and reconstruction.png")
    output_file(str(out / "tokens.json"), "--out")
    output_file(str(out / "reconstruction.png"), "--out")
    image = load_image(args.image)  # fail on a bad file before paying for the model load
    model = args.model or default_model()  # (MMGEN_MODEL's, recorded in the tokens file, which decode reads)
    vq = load_tokenizer(model)
    result = encode_image(vq, image, max_side=args.max_side)
    meta = {"model_id": model, "num_codes": vq.num_codes, "downsample_factor": vq.downsample_factor}
    save_tokens(result.tokens, out / "tokens.json", **meta)
    result.reconstruction.save(out / "reconstruction.png")
    if result.image.size != image.size:
        print(f"note: encoded at {result.image.width}x{result.image.height} (from {image.width}x{image.height})")
    h, w = result.tokens.shape
    print(f"{h}x{w} tokens, {len(result.tokens.unique())} distinct codes; PSNR {result.psnr:.2f} dB")
    print(f"wrote {out / 'tokens.json'} and {out / 'reconstruction.png'}")


def cmd_decode(args):
    from .tokens import decode_tokens, load_tokens_file, tokens_from_dict

    output_file(args.out, "--out", IMAGE_SUFFIXES)
    data = load_tokens_file(args.tokens)
    vq = decoding_tokenizer(args.model, data.get("model") if isinstance(data, dict) else None)
    image = decode_tokens(vq, tokens_from_dict(data, num_codes=vq.num_codes))
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")


def decoding_tokenizer(given: str | None, recorded) -> Tokenizer:
    """The tokenizer to decode with: the one given, else the one the tokens file names (encode and generate record
    it), else the default; a note when the given one is not the file's, or the file's cannot be loaded."""
    from .tokenizers import load_tokenizer
    from .tokens import default_model

    recorded = recorded.strip() if isinstance(recorded, str) and recorded.strip() else None
    if given:
        if recorded and Path(given.rstrip("/")).name != Path(recorded.rstrip("/")).name:
            print(f"note: these tokens were made with {recorded}; decoding them with {given}", file=sys.stderr)
        return load_tokenizer(given)
    if recorded:
        try:
            return load_tokenizer(recorded)
        except ValueError as e:
            print(f"note: the file's tokenizer cannot be loaded ({e}); trying {default_model()}", file=sys.stderr)
    return load_tokenizer(default_model())


IMAGE_SUFFIXES = (".png", *sorted(IMAGE_EXTENSIONS - {".png"}))  # what images are read and written as


def output_file(path: str | None, option: str, suffixes: tuple[str, ...] = ()) -> None:
    """Check (and make the folder of) a file the command will write, before any model loads: a run's minutes are
    not lost to a name that cannot be written. None: the option was not given."""
    if path is None:
        return
    p = Path(path)
    try:
        is_dir = p.is_dir()
    except OSError as e:  # a name too long
        raise ValueError(f"{option} {path}: cannot be written ({e.strerror or e})") from None
    if is_dir:
        example = p / ("image" + suffixes[0] if suffixes[:1] not in ((), (".json",)) else option[2:] + ".json")
        raise ValueError(f"{option} {path} is a folder: give a file name such as {example}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path}: the name must end in {' or '.join(suffixes)}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot make its folder ({e.strerror or e})") from None
    try:  # really open it (appending writes nothing): permissions alone pass root, and miss a name too long
        existed = p.exists()
        with open(p, "ab"):
            pass
        if not existed:
            p.unlink()
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot be written ({e.strerror or e})") from None


def cmd_generate(args):
    from .attention import AttentionRecorder
    from .callbacks import TrajectoryRecorder
    from .pipeline import MMGenPipeline
    from .settings import SamplingSettings, model_sampling_defaults
    from .tokens import default_model, save_tokens
    from .viz import save_gif, word_map_grid

    given = {
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "guidance_interval": args.guidance_interval,
        "codebook_snap": args.codebook_snap,
        "num_candidates": args.candidates,
        "seed": args.seed,
        "scheduler": args.scheduler,
        "first_block_cache": args.first_block_cache,
    }
    SamplingSettings.of_model(model_sampling_defaults(), args.prompt, **given).checked()  # before the model load
    named = [Path(p).resolve() for p in (args.out, args.tokens, args.trajectory, args.attention) if p]
    if len(set(named)) < len(named):  # one would overwrite another
        raise ValueError("--out, --tokens, --trajectory and --attention must name different files")
    output_file(args.out, "--out", IMAGE_SUFFIXES)
    output_file(args.tokens, "--tokens", (".json",))
    output_file(args.trajectory, "--trajectory", (".gif", ".webp", ".png"))  # animated
    output_file(args.attention, "--attention", IMAGE_SUFFIXES)
    model = args.model or default_model()
    pipe = MMGenPipeline.from_pretrained(model)
    settings = SamplingSettings.of_model(pipe.sampling_defaults, args.prompt, **given).checked()  # its defaults
    if settings.scheduler:
        pipe.use_scheduler(settings.scheduler)
    if args.known_words:
        settings = dataclasses.replace(settings, prompt=prompt_in_known_words(pipe, settings.prompt))
    warn_unknown_words(pipe, settings.prompt)
    if args.attention and settings.first_block_cache:
        skipped = "with the first-block cache, a skipped step adds its first block's attention alone (0: off)"
        print(f"warning: {skipped}", file=sys.stderr)
    recorder = TrajectoryRecorder(decode=bool(args.trajectory))
    attention = AttentionRecorder(pipe, settings.prompt) if args.attention else contextlib.nullcontext()
    with attention:
        out = pipe(
            **settings.pipeline_kwargs(),
            generator=settings.generator(),
            callback_on_step_end=recorder,
            callback_on_step_end_tensor_inputs=recorder.tensor_inputs,
        )
    out.images[0].save(args.out)
    print(f"wrote {args.out}")
    if args.tokens:
        vq = pipe.vqvae
        save_tokens(
            out.tokens[0],
            args.tokens,
            model_id=model,
            num_codes=vq.config.num_codes,
            downsample_factor=vq.downsample_factor,
        )
        print(f"wrote {args.tokens}")
    if args.trajectory:
        save_gif([s.images[0] for s in recorder.steps], args.trajectory)
        print(f"wrote {args.trajectory} ({len(recorder.steps)} steps)")
    if args.attention:
        word_map_grid(out.images[0], attention.word_maps()).save(args.attention)
        print(f"wrote {args.attention} (each word's attention map, {len(attention.steps)} steps)")


def prompt_in_known_words(pipe, prompt: str) -> str:
    """`prompt` in the model's training words (`Vocabulary.in_known_words`), said on stderr when it changed."""
    from .vocabulary import Vocabulary, split_words

    vocabulary = Vocabulary.for_pipeline(pipe)
    if vocabulary is None:
        raise ValueError("--known-words: this model was published without transformer/vocabulary.json")
    known = vocabulary.in_known_words(prompt, (pipe.tokenizer, pipe.text_encoder))
    if not known.strip():
        raise ValueError(f"--known-words: {prompt!r} names nothing the model knows, or anything near it")
    if known != " ".join(split_words(prompt)):
        print(f"in known words: {known}", file=sys.stderr)
    return known


def warn_unknown_words(pipe, prompt: str) -> None:
    """Warn, without stopping, about prompt words the model's training captions never held."""
    from .vocabulary import Vocabulary

    vocabulary = Vocabulary.for_pipeline(pipe)
    message = vocabulary and vocabulary.warning(prompt, (pipe.tokenizer, pipe.text_encoder))
    if message:
        print(f"warning: {message}", file=sys.stderr)


def cmd_caption(args):
    from .captioning import caption_candidates
    from .data.images import load_image
    from .pipeline import MMGenPipeline
    from .tokens import default_model

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    image = load_image(args.image)  # fail on a bad file (or captions file) before paying for the model load
    captions = None
    if args.captions:
        try:
            lines = Path(args.captions).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ValueError(f"{args.captions}: not a UTF-8 text file (one caption per line)") from None
        captions = [c.strip() for c in lines if c.strip() and not c.lstrip().startswith("#")]
        if not captions:
            raise ValueError(f"{args.captions} holds no captions (one per line)")
    pipe = MMGenPipeline.from_pretrained(args.model or default_model())
    pipe.set_progress_bar_config(disable=True)
    ranked = pipe.rank_captions(image, captions) if captions else caption_candidates(pipe, image)
    print("denoising error (lower: the model finds the caption more likely)")
    for text, error in ranked[: args.top]:
        print(f"{error:.5f}  {text}")


def add_data_commands(sub) -> None:
    """`mmgen shapes` and `mmgen data`: datasets written as image folders with captions."""
    p = sub.add_parser("shapes", help="write shapes-v1 samples as PNGs plus metadata.jsonl")
    p.add_argument("--n", type=int, required=True, help="how many scenes")
    p.add_argument("--out", required=True, help="the folder to write into (holding no other files)")
    p.add_argument("--seed", type=count(0), default=0, help="the shapes-v1 stream: 0 trains, others are held out")
    p.set_defaults(func=cmd_shapes)

    p = sub.add_parser("data", help="prepare a real dataset as an image folder with captions (--data DIR)")
    p.add_argument("dataset", choices=["emoji"], help="emoji: Noto Color Emoji with CLDR names (docs/own-data.md)")
    p.add_argument("--out", required=True, help="the folder to write into (holding no other files)")
    p.add_argument("--size", type=int, choices=[64, 128], default=64, help="image side in pixels")
    p.add_argument(
        "--split",
        choices=["train", "held-out", "reworded"],
        default="train",
        help="held-out: every 10th emoji; reworded: the training emoji with evaluation captions",
    )
    p.set_defaults(func=cmd_data)


def add_train_and_eval_commands(sub) -> None:
    """The trainers (`mmgen train-*`) and the evaluations (`mmgen eval-*`), each module's own options."""
    from .eval import (
        eval_attention,
        eval_caption,
        eval_generator,
        eval_judge,
        eval_retrieval,
        eval_tokenizer,
        train_verifier,
    )
    from .training import train_generator, train_tokenizer

    p = sub.add_parser("train-tokenizer", help="train the VQ-VAE (accelerate)")
    train_tokenizer.add_arguments(p).set_defaults(func=train_tokenizer.main)
    p = sub.add_parser("train-generator", help="train the text-conditioned DiT (accelerate)")
    train_generator.add_arguments(p).set_defaults(func=train_generator.main)
    p = sub.add_parser("eval-tokenizer", help="evaluate a tokenizer on held-out data")
    eval_tokenizer.add_arguments(p).set_defaults(func=eval_tokenizer.main)
    p = sub.add_parser("eval-generator", help="evaluate text-to-image with the scene judge")
    eval_generator.add_arguments(p).set_defaults(func=eval_generator.main)
    p = sub.add_parser("eval-caption", help="evaluate image-to-text (caption ranking and search) on held-out scenes")
    eval_caption.add_arguments(p).set_defaults(func=eval_caption.main)
    p = sub.add_parser("eval-attention", help="measure whether each word's attention map lands on its object")
    eval_attention.add_arguments(p).set_defaults(func=eval_attention.main)
    p = sub.add_parser("eval-judge", help="the scene judge on right images and deliberately wrong drawings")
    eval_judge.add_arguments(p).set_defaults(func=eval_judge.main)
    p = sub.add_parser("train-verifier", help="train the strict judge's shape verifier and calibrate it on labels")
    train_verifier.add_arguments(p).set_defaults(func=train_verifier.main)
    p = sub.add_parser("eval-retrieval", help="prompt fidelity on a real domain: is each image nearest its caption's?")
    eval_retrieval.add_arguments(p).set_defaults(func=eval_retrieval.main)


def build_parser() -> argparse.ArgumentParser:
    from .eval import eval_generator

    parser = argparse.ArgumentParser(prog="mmgen", description="VQ-VAE tokenizer + DiT generator, hands-on.")
    sub = parser.add_subparsers(dest="command", required=True)

    add_data_commands(sub)

    p = sub.add_parser("encode", help="turn an image into codebook tokens and back")
    p.add_argument("image", help="an image file (PNG, JPEG, ...)")
    p.add_argument("--out", required=True, help="folder for tokens.json and reconstruction.png")
    model_help = "a generator: model folder or Hub id (default: $MMGEN_MODEL, else assets/mmgen-base)"
    tokenizer_help = (
        "a VQ tokenizer: model or pipeline folder, Hub id, or a shipped one: mmgen-base-64, vqgan-f8 "
        "(default: $MMGEN_MODEL's)"
    )
    p.add_argument("--tokenizer", "--model", dest="model", metavar="NAME_OR_PATH", help=tokenizer_help)
    p.add_argument("--max-side", type=int, default=512, help="downscale larger images to this longer side")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn a tokens.json back into an image")
    p.add_argument("tokens", help="a tokens.json written by encode or generate --tokens")
    p.add_argument("--out", required=True, help="output PNG")
    decode_help = tokenizer_help.replace("(default: ", "(default: the one the tokens file names, else ")
    p.add_argument("--tokenizer", "--model", dest="model", metavar="NAME_OR_PATH", help=decode_help)
    p.set_defaults(func=cmd_decode)

    from . import compare, export_hub

    p = sub.add_parser("compare-tokenizers", help="images through several tokenizers: a table and a side-by-side PNG")
    compare.add_arguments(p).set_defaults(func=compare.main)
    p = sub.add_parser("export-hub", help="write a model folder that plain diffusers loads (trust_remote_code)")
    export_hub.add_arguments(p).set_defaults(func=export_hub.main)

    from .pipeline import DEFAULT_GUIDANCE_INTERVAL, SCHEDULERS
    from .settings import MAX_CANDIDATES, model_sampling_defaults

    defaults = model_sampling_defaults()
    p = sub.add_parser(
        "generate",
        help="text to image with the DiT pipeline",
        description="Text to image. Steps, guidance, codebook snap, candidates and the first-block cache default to "
        "the model's own, "
        "where its folder sets them (model_index.json's sampling_defaults: mmgen-base-64 samples at 30 steps), "
        f"else to {defaults['num_inference_steps']}, {defaults['guidance_scale']:g}, {defaults['codebook_snap']:g} "
        f"and {defaults['num_candidates']}, cache off.",
    )
    p.add_argument("prompt", help='what to draw, e.g. "a large red circle at the top left on a white background"')
    p.add_argument("--out", default="image.png", help="output PNG")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    shown = "all" if DEFAULT_GUIDANCE_INTERVAL is None else "{:g},{:g}".format(*DEFAULT_GUIDANCE_INTERVAL)
    p.add_argument(
        "--guidance-interval",
        type=eval_generator.guidance_interval,
        default=DEFAULT_GUIDANCE_INTERVAL,
        metavar="LOW,HIGH",
        help=f"guide only the steps whose timestep (0..999) lies in LOW..HIGH; all: every step (default: {shown})",
    )
    p.add_argument(
        "--codebook-snap",
        type=float,
        help="move each step's predicted clean latent this fraction of the way to its codes (default: the model's)",
    )
    p.add_argument(
        "--candidates",
        type=int,
        help=f"best-of-N starting noise (1..{MAX_CANDIDATES}): sample the one the model finds most likely "
        "(default: the model's)",
    )
    p.add_argument("--seed", type=int, default=0, help="the starting noise: the same seed draws the same image")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None, help="default: the model's")
    p.add_argument(
        "--first-block-cache", type=eval_generator.cache_threshold, metavar="T", help=eval_generator.CACHE_HELP
    )
    p.add_argument("--trajectory", help="also write the predicted image of every step as an animated GIF")
    p.add_argument("--tokens", help="also write the image's token grid as JSON")
    p.add_argument("--attention", metavar="PNG", help="also write where each word of the prompt went (a grid)")
    p.add_argument(
        "--known-words",
        action="store_true",
        help="draw the prompt in the model's training words: each word it never saw becomes the known word nearest "
        "in spelling or meaning ('upper' -> 'top')",
    )
    p.add_argument("--model", default=None, help=model_help)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("caption", help="image to text: rank captions by the generator's denoising error")
    p.add_argument("image", help="an image the generator's size (128x128 for mmgen-base)")
    p.add_argument("--captions", help="a text file of captions to rank, one per line (default: the model's own)")
    p.add_argument("--top", type=int, default=10, help="print at most this many")
    p.add_argument("--model", default=None, help=model_help)
    p.set_defaults(func=cmd_caption)

    add_train_and_eval_commands(sub)
    return parser


def quiet_loading() -> None:
    """No progress bars while weights load (diffusers' and transformers' own: one per component, one per weights
    shard): a command says what it did. The sampling loop's bar stays, and so do the Hub's download bars."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    enable_progress_bars()  # transformers' switch turns the Hub's off as well


def check_results_file(args) -> None:
    """Every evaluation's --out (results JSON) and compare-tokenizers' (a picture), checked before minutes of work."""
    if args.command.startswith("eval-"):
        output_file(args.out, "--out")
    elif args.command == "compare-tokenizers":
        output_file(args.out, "--out", IMAGE_SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_results_file(args)
        if args.command not in ("shapes", "data"):  # the commands that load no model
            quiet_loading()
        args.func(args)
    except (ImageLoadError, ValueError, OSError, SafetensorError) as e:  # SafetensorError: e.g. a full disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: a line, not a traceback; a training run keeps its last checkpoint
        train = args.command.startswith("train")
        resume = " (the same command with --resume, or the recipe again, continues from the last checkpoint)"
        print("interrupted" + (f": {e}" if str(e) else "") + (resume if train else ""), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
