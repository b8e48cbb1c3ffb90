"""The `mmgen` command line: one subcommand per task, each a thin wrapper over the package.

    mmgen shapes --n 100 --out data/shapes          # write shapes-v1 samples + metadata.jsonl
    mmgen encode photo.jpg --out out/               # tokens.json + reconstruction.png, prints PSNR
    mmgen decode out/tokens.json --out image.png
    mmgen train-tokenizer --out runs/vqvae          # see mmgen/training/train_tokenizer.py
    mmgen train-generator --out runs/generator      # see mmgen/training/train_generator.py
    mmgen eval-tokenizer --model assets/mmgen-base

Bad input (a missing or broken file, a malformed tokens file) ends with a one-line `error:` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data.images import ImageLoadError


def cmd_shapes(args):
    from .data.shapes import write_shapes

    if args.n < 1:
        raise ValueError("--n must be at least 1")
    out = write_shapes(args.out, args.n, seed=args.seed)
    print(f"wrote {args.n} shapes-v1 samples (seed {args.seed}) and metadata.jsonl to {out}")


def cmd_encode(args):
    from .data.images import load_image
    from .tokens import encode_image, load_vqvae, save_tokens

    image = load_image(args.image)  # fail on a bad file before paying for the model load
    vq = load_vqvae(args.model)
    result = encode_image(vq, image, max_side=args.max_side)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_tokens(
        result.tokens,
        out / "tokens.json",
        model_id=args.model or "mmgen-base",
        num_codes=vq.config.num_codes,
        downsample_factor=vq.downsample_factor,
    )
    result.reconstruction.save(out / "reconstruction.png")
    if result.image.size != image.size:
        print(f"note: encoded at {result.image.width}x{result.image.height} (from {image.width}x{image.height})")
    h, w = result.tokens.shape
    print(f"{h}x{w} tokens, {len(result.tokens.unique())} distinct codes; PSNR {result.psnr:.2f} dB")
    print(f"wrote {out / 'tokens.json'} and {out / 'reconstruction.png'}")


def cmd_decode(args):
    from .tokens import decode_tokens, load_vqvae, read_tokens

    vq = load_vqvae(args.model)
    image = decode_tokens(vq, read_tokens(args.tokens, num_codes=vq.config.num_codes))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")


def cmd_generate(args):
    from .callbacks import TrajectoryRecorder
    from .pipeline import MMGenPipeline
    from .settings import SamplingSettings
    from .tokens import default_model, save_tokens
    from .viz import save_gif

    settings = SamplingSettings(
        prompt=args.prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        guidance_interval=args.guidance_interval,
        codebook_snap=args.codebook_snap,
        num_candidates=args.candidates,
        seed=args.seed,
        scheduler=args.scheduler,
    ).checked()  # before paying for the model load
    model = args.model or default_model()
    pipe = MMGenPipeline.from_pretrained(model)
    if settings.scheduler:
        pipe.use_scheduler(settings.scheduler)
    recorder = TrajectoryRecorder(decode=bool(args.trajectory))
    out = pipe(
        **settings.pipeline_kwargs(),
        generator=settings.generator(),
        callback_on_step_end=recorder,
        callback_on_step_end_tensor_inputs=recorder.tensor_inputs,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
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


def cmd_train_tokenizer(args):
    from .training.train_tokenizer import main

    main(args)


def cmd_train_generator(args):
    from .training.train_generator import main

    main(args)


def cmd_eval_tokenizer(args):
    from .eval.eval_tokenizer import main

    main(args)


def cmd_eval_generator(args):
    from .eval.eval_generator import main

    main(args)


def build_parser() -> argparse.ArgumentParser:
    from .eval import eval_generator, eval_tokenizer
    from .training import train_generator, train_tokenizer

    parser = argparse.ArgumentParser(prog="mmgen", description="VQ-VAE tokenizer + DiT generator, hands-on.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("shapes", help="write shapes-v1 samples as PNGs plus metadata.jsonl")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_shapes)

    p = sub.add_parser("encode", help="turn an image into codebook tokens and back")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="folder for tokens.json and reconstruction.png")
    p.add_argument("--model", default=None, help="model folder or Hub id (default: $MMGEN_MODEL or the shipped one)")
    p.add_argument("--max-side", type=int, default=512, help="downscale larger images to this longer side")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn a tokens.json back into an image")
    p.add_argument("tokens")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--model", default=None)
    p.set_defaults(func=cmd_decode)

    from .pipeline import (
        DEFAULT_CODEBOOK_SNAP,
        DEFAULT_GUIDANCE_INTERVAL,
        DEFAULT_GUIDANCE_SCALE,
        DEFAULT_NUM_CANDIDATES,
        DEFAULT_STEPS,
        SCHEDULERS,
    )
    from .settings import MAX_CANDIDATES

    p = sub.add_parser("generate", help="text to image with the DiT pipeline")
    p.add_argument("prompt")
    p.add_argument("--out", default="image.png")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE)
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
        default=DEFAULT_CODEBOOK_SNAP,
        help="move each step's predicted clean latent this fraction of the way to its codes",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_NUM_CANDIDATES,
        help=f"best-of-N starting noise (1..{MAX_CANDIDATES}): sample the one the model finds most likely",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None, help="default: the model's")
    p.add_argument("--trajectory", help="also write the predicted image of every step as an animated GIF")
    p.add_argument("--tokens", help="also write the image's token grid as JSON")
    p.add_argument("--model", default=None)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train-tokenizer", help="train the VQ-VAE (accelerate)")
    train_tokenizer.add_arguments(p).set_defaults(func=cmd_train_tokenizer)
    p = sub.add_parser("train-generator", help="train the text-conditioned DiT (accelerate)")
    train_generator.add_arguments(p).set_defaults(func=cmd_train_generator)
    p = sub.add_parser("eval-tokenizer", help="evaluate a tokenizer on held-out data")
    eval_tokenizer.add_arguments(p).set_defaults(func=cmd_eval_tokenizer)
    p = sub.add_parser("eval-generator", help="evaluate text-to-image with the scene judge")
    eval_generator.add_arguments(p).set_defaults(func=cmd_eval_generator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ImageLoadError, ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
