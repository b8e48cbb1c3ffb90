"""The `mmgen` command line's options: one subcommand per task, its options built only when it runs.

A command's options come from modules that import torch and diffusers (several seconds), so `mmgen --help` lists
the commands from their one-line help alone, and `mmgen generate ...` builds the options of `generate` only.
`build_parser()` with no command builds them all (the tests read every option's help).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from .eval import count


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout, with each option's default said where its help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default == [] or default is argparse.SUPPRESS or action.nargs == 0  # 0: a flag
        if action.option_strings and not unset and "default" not in text:
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            text += " (default: {})".format(shown.replace("%", "%%"))
        return text


def _shapes(p: argparse.ArgumentParser) -> None:
    from .cli import cmd_shapes

    p.add_argument("--n", type=int, required=True, help="how many scenes")
    p.add_argument("--out", required=True, help="the folder to write into (holding no other files)")
    p.add_argument(
        "--seed",
        type=count(0),
        default=0,
        help="the shapes-v1 stream: the shipped models train on 0 and 1, and 2 is held out for their evaluation",
    )
    p.add_argument("--size", type=int, choices=[64, 128], default=64, help="image side in pixels (mmgen-base: 128)")
    p.set_defaults(func=cmd_shapes)


def _data(p: argparse.ArgumentParser) -> None:
    from .cli import cmd_data

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


NOT_GIVEN = object()  # an option's default that tells "not typed" apart from every value (generate --from-card)
MODEL_HELP = "a generator: model folder or Hub id (default: $MMGEN_MODEL, else assets/mmgen-base)"
TOKENIZER_HELP = (
    "a VQ tokenizer: model or pipeline folder, Hub id, or a shipped one: mmgen-base-64, vqgan-f8 "
    "(default: $MMGEN_MODEL's, else mmgen-base's: vqgan-f8's codes with a decoder for shapes; photos: vqgan-f8)"
)


def _encode(p: argparse.ArgumentParser) -> None:
    from .cli import cmd_encode

    p.add_argument("image", help="an image file (PNG, JPEG, ...)")
    p.add_argument("--out", required=True, help="a folder, for tokens.json and reconstruction.png")
    p.add_argument("--tokenizer", "--model", dest="model", metavar="NAME_OR_PATH", help=TOKENIZER_HELP)
    p.add_argument(
        "--max-side", type=int, default=512, help="downscale larger images to this longer side (0: no limit)"
    )
    p.set_defaults(func=cmd_encode)


def _decode(p: argparse.ArgumentParser) -> None:
    from .cli import cmd_decode

    p.add_argument("tokens", help="a tokens.json written by encode or generate --tokens")
    p.add_argument("--out", required=True, help="output PNG")
    decode_help = TOKENIZER_HELP.replace("(default: ", "(default: the one the tokens file names, else ")
    p.add_argument("--tokenizer", "--model", dest="model", metavar="NAME_OR_PATH", help=decode_help)
    p.set_defaults(func=cmd_decode)


def _generate(p: argparse.ArgumentParser) -> None:
    from .cli import cmd_generate
    from .eval import eval_generator
    from .pipeline import SCHEDULERS
    from .settings import DEFAULT_GUIDANCE_INTERVAL, MAX_CANDIDATES, model_sampling_defaults

    defaults = model_sampling_defaults()
    p.description = (
        "Text to image. Steps, guidance, codebook snap, candidates and the first-block cache default to the model's "
        "own, where its folder sets them (model_index.json's sampling_defaults: mmgen-base-64 samples at 30 steps), "
        f"else to {defaults['num_inference_steps']}, {defaults['guidance_scale']:g}, {defaults['codebook_snap']:g} "
        f"and {defaults['num_candidates']}, cache off."
    )
    p.add_argument(
        "prompt",
        nargs="?",
        help='what to draw, e.g. "a large red circle at the top left on a white background" (with --from-card: '
        "the card's, unless given)",
    )
    p.add_argument("--out", default="image.png", help="output PNG")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    shown = "all" if DEFAULT_GUIDANCE_INTERVAL is None else "{:g},{:g}".format(*DEFAULT_GUIDANCE_INTERVAL)
    p.add_argument(
        "--guidance-interval",
        type=eval_generator.guidance_interval,
        default=NOT_GIVEN,
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
    p.add_argument("--seed", type=int, help="the starting noise: the same seed draws the same image (default: 0)")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None, help="sampler (default: the model's)")
    p.add_argument(
        "--first-block-cache", type=eval_generator.cache_threshold, metavar="T", help=eval_generator.CACHE_HELP
    )
    p.add_argument("--trajectory", help="also write the predicted image of every step as an animated GIF")
    p.add_argument("--tokens", help="also write the image's token grid as JSON")
    p.add_argument("--attention", metavar="PNG", help="also write where each word of the prompt went (a grid)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="the DiT's matmuls in bf16, as the app runs them where the CPU has them natively (AVX512-BF16, AMX: "
        "~1.7x faster; elsewhere emulated, slower); a few token cells differ from float32",
    )
    p.add_argument("--card", metavar="JSON", help="also write the run card: every setting the image depends on")
    p.add_argument(
        "--from-card",
        metavar="JSON",
        help="draw the image a run card describes (this command's --card, or the app's download) with the model it "
        "names; a prompt or option given replaces the card's",
    )
    p.add_argument(
        "--known-words",
        action="store_true",
        help="draw the prompt in the model's training words: each word it never saw becomes the known word nearest "
        "in spelling or meaning ('upper' -> 'top')",
    )
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.set_defaults(func=cmd_generate)


def _caption(p: argparse.ArgumentParser) -> None:
    from .cli import cmd_caption

    p.add_argument("image", help="an image the generator's size (128x128 for mmgen-base)")
    p.add_argument("--captions", help="a text file of captions to rank, one per line (default: the model's own)")
    p.add_argument("--top", type=int, default=10, help="print at most this many")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.set_defaults(func=cmd_caption)


def _module(name: str) -> Callable[[argparse.ArgumentParser], None]:
    """The options of a command that lives in its own module: its `add_arguments`, run by its `main`."""

    def build(p: argparse.ArgumentParser) -> None:
        module = importlib.import_module(name)
        module.add_arguments(p).set_defaults(func=module.main)

    return build


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {  # name: (help, its options)
    "shapes": ("write shapes-v1 samples as PNGs plus metadata.jsonl", _shapes),
    "data": ("prepare a real dataset as an image folder with captions (--data DIR)", _data),
    "encode": ("turn an image into codebook tokens and back", _encode),
    "decode": ("turn a tokens.json back into an image", _decode),
    "compare-tokenizers": (
        "images through several tokenizers: a table and a side-by-side PNG",
        _module("mmgen.compare"),
    ),
    "export-hub": ("write a model folder that plain diffusers loads (trust_remote_code)", _module("mmgen.export_hub")),
    "generate": ("text to image with the DiT pipeline", _generate),
    "caption": ("image to text: rank captions by the generator's denoising error", _caption),
    "train-tokenizer": ("train a VQ-VAE or VQ-GAN (accelerate)", _module("mmgen.training.train_tokenizer")),
    "train-generator": ("train the text-conditioned DiT (accelerate)", _module("mmgen.training.train_generator")),
    "eval-tokenizer": ("evaluate a tokenizer on held-out data", _module("mmgen.eval.eval_tokenizer")),
    "eval-generator": ("evaluate text-to-image with the scene judge", _module("mmgen.eval.eval_generator")),
    "eval-caption": (
        "evaluate image-to-text (caption ranking and search) on held-out scenes",
        _module("mmgen.eval.eval_caption"),
    ),
    "eval-attention": (
        "measure whether each word's attention map lands on its object",
        _module("mmgen.eval.eval_attention"),
    ),
    "eval-judge": (
        "the scene judge on right images and deliberately wrong drawings",
        _module("mmgen.eval.eval_judge"),
    ),
    "train-verifier": (
        "train the strict judge's shape verifier and calibrate it on labels",
        _module("mmgen.eval.train_verifier"),
    ),
    "eval-retrieval": (
        "prompt fidelity on a real domain: is each image nearest its caption's?",
        _module("mmgen.eval.eval_retrieval"),
    ),
}


def command_of(argv: list[str]) -> str:
    """The subcommand `argv` names: its first word not an option (the top level has no option but --help); none
    when --help comes first (`mmgen -h generate` is the command list)."""
    first = next((a for a in argv if not a.startswith("-") or a in ("-h", "--help")), "")
    return "" if first in ("-h", "--help") else first


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of `command` only ("": none, for `mmgen --help`; None: every command's)."""
    parser = argparse.ArgumentParser(prog="mmgen", description="VQ-VAE tokenizer + DiT generator, hands-on.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (text, add_options) in COMMANDS.items():
        description = text[:1].upper() + text[1:] + ("" if text.endswith(("?", "!", ".")) else ".")
        p = sub.add_parser(name, help=text, description=description, formatter_class=HelpFormatter)
        if command is None or command == name:
            add_options(p)
    return parser
