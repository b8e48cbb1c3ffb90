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

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from .cli_errors import memory_advice, out_of_memory, resume_hint
from .cli_parser import build_parser, command_of

if TYPE_CHECKING:
    from .run_card import LoadedRunCard
    from .settings import SamplingSettings
    from .tokenizers import Tokenizer


def cmd_data(args):
    from .data.emoji import write_emoji

    n = write_emoji(args.out, size=args.size, split=args.split)
    print(f"wrote {n} emoji ({args.split}, {args.size} px) and metadata.jsonl to {args.out}")


def cmd_shapes(args):
    from .data.shapes import write_shapes

    if args.n < 1:
        raise ValueError("--n must be at least 1")
    out = write_shapes(args.out, args.n, seed=args.seed, scale=args.size // 64)
    print(f"wrote {args.n} shapes-v1 samples ({args.size} px, seed {args.seed}) and metadata.jsonl to {out}")


def cmd_encode(args):
    from .images import IMAGE_EXTENSIONS, check_max_side, load_image
    from .tokenizers import load_tokenizer
    from .tokens import default_model, encode_image, save_tokens

    check_max_side(args.max_side)
    out = Path(args.out)
    # a file, or a new name like a file's (`--out recon.png` made a folder of that name); a folder may be called so
    if not out.is_dir() and (out.exists() or out.suffix.lower() in IMAGE_EXTENSIONS | {".json"}):
        raise ValueError(f"--out {args.out} is a file: give a folder, for its tokens.json and reconstruction.png")
    if (out / "reconstruction.png").resolve() == Path(args.image).resolve():
        raise ValueError(f"--out {args.out}: its reconstruction.png would overwrite the image: give another folder")
    output_file(str(out / "tokens.json"), "--out")
    output_file(str(out / "reconstruction.png"), "--out")
    image = load_image(args.image)  # fail on a bad file before paying for the model load
    model = args.model or default_model()  # (MMGEN_MODEL's, recorded in the tokens file, which decode reads)
    vq = load_tokenizer(model)
    result = encode_image(vq, image, max_side=args.max_side)
    meta = {"model_id": recorded_model(model), "num_codes": vq.num_codes, "downsample_factor": vq.downsample_factor}
    save_tokens(result.tokens, out / "tokens.json", **meta)
    result.reconstruction.save(out / "reconstruction.png")
    if result.image.size != image.size:
        print(f"note: encoded at {result.image.width}x{result.image.height} (from {image.width}x{image.height})")
    h, w = result.tokens.shape
    print(f"{w}x{h} tokens, {len(result.tokens.unique())} distinct codes; PSNR {result.psnr:.2f} dB")
    print(f"wrote {out / 'tokens.json'} and {out / 'reconstruction.png'}")


def cmd_decode(args):
    from .tokens import decode_tokens, load_tokens_file, tokens_from_dict

    output_file(args.out, "--out", image_suffixes())
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


def image_suffixes() -> tuple[str, ...]:
    """The names images are read and written as, .png first (what an example names)."""
    from .images import IMAGE_EXTENSIONS

    return (".png", *sorted(IMAGE_EXTENSIONS - {".png"}))


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
    from .run_card import make_run_card, read_run_card, scheduler_config_of
    from .settings import model_sampling_defaults
    from .tokens import default_model, save_tokens
    from .viz import save_gif, step_frames, word_map_grid

    card = read_run_card(args.from_card) if args.from_card else None  # checked, as the options, before the load
    generate_settings(args, model_sampling_defaults(), card)
    named = [Path(p).resolve() for p in (args.out, args.tokens, args.trajectory, args.attention, args.card) if p]
    if len(set(named)) < len(named):  # one would overwrite another
        raise ValueError("--out, --tokens, --trajectory, --attention and --card must name different files")
    output_file(args.out, "--out", image_suffixes())
    output_file(args.tokens, "--tokens", (".json",))
    output_file(args.trajectory, "--trajectory", (".gif", ".webp", ".png"))  # animated
    output_file(args.attention, "--attention", image_suffixes())
    output_file(args.card, "--card", (".json",))
    model = args.model or (card and card.model) or default_model()
    try:
        pipe = MMGenPipeline.from_pretrained(model)
    except ValueError as e:
        if args.model or not card:
            raise
        raise ValueError(f"{e} (the model the run card names: choose another with --model)") from None
    settings = generate_settings(args, pipe.sampling_defaults, card)  # the model's own defaults where not given
    if args.bf16:
        import torch

        pipe.set_autocast(torch.bfloat16)
    matmuls = "bf16" if pipe.autocast_dtype is not None else "float32"
    if card:
        card = read_run_card(args.from_card, matmuls=matmuls)  # again, for the notes on what differs here
        for note in card_notes(card, args, model):
            print(f"note: {note}", file=sys.stderr)
        if card.matmuls == "bf16" and not args.bf16:
            print("note: --bf16 draws it with the matmuls it was made with", file=sys.stderr)
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
            model_id=recorded_model(model),
            num_codes=vq.config.num_codes,
            downsample_factor=vq.downsample_factor,
        )
        print(f"wrote {args.tokens}")
    if args.trajectory:
        frames = step_frames([s.images[0] for s in recorder.steps], [s.timestep for s in recorder.steps], scale=4)
        save_gif(frames, args.trajectory)
        print(f"wrote {args.trajectory} ({len(recorder.steps)} steps)")
    if args.attention:
        word_map_grid(out.images[0], attention.word_maps()).save(args.attention)
        print(f"wrote {args.attention} (each word's attention map, {len(attention.steps)} steps)")
    if args.card:
        card_out = make_run_card(settings, recorded_model(model), scheduler_config_of(pipe.scheduler), matmuls)
        Path(args.card).write_text(json.dumps(card_out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.card} (mmgen generate --from-card {args.card} draws this image again)")


# generate's options, by the field of SamplingSettings each sets
RANKED_QUIETLY = 64  # `caption --captions FILE`: more than this many, and it says how many it ranks
SETTING_OPTIONS = {
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "guidance_interval": "guidance_interval",
    "codebook_snap": "codebook_snap",
    "num_candidates": "candidates",
    "seed": "seed",
    "scheduler": "scheduler",
    "first_block_cache": "first_block_cache",
}


def typed_settings(args) -> dict:
    """The sampling options typed on the command line, by settings field (a guidance interval of "all" is None)."""
    from .cli_parser import NOT_GIVEN

    values = {field: getattr(args, option) for field, option in SETTING_OPTIONS.items()}
    return {k: v for k, v in values.items() if v is not NOT_GIVEN and (v is not None or k == "guidance_interval")}


def generate_settings(args, model_defaults, card: LoadedRunCard | None) -> SamplingSettings:
    """What `generate` draws with, checked: the options typed, and for the rest the run card's values, else the
    model's defaults (`model_defaults`; seed 0, guidance at timesteps DEFAULT_GUIDANCE_INTERVAL)."""
    from .settings import DEFAULT_GUIDANCE_INTERVAL, SamplingSettings

    typed = typed_settings(args)
    if card:
        prompt = {"prompt": args.prompt} if args.prompt is not None else {}
        return dataclasses.replace(card.settings, **typed, **prompt).checked()
    if args.prompt is None:
        raise ValueError("give a prompt, or a run card to draw again with --from-card")
    typed = {"seed": 0, "guidance_interval": DEFAULT_GUIDANCE_INTERVAL} | typed
    return SamplingSettings.of_model(model_defaults, args.prompt, **typed).checked()


def card_notes(card: LoadedRunCard, args, model: str) -> list[str]:
    """Why the image may differ from the card's: the card's own notes, another model, the options typed."""
    notes = list(card.notes)
    if card.model is not None and model_key(card.model) != model_key(model):
        notes.append(f"the card was made with model {card.model!r}; this is {model!r}")
    replaced = ["prompt"] * (args.prompt is not None) + [
        f"--{SETTING_OPTIONS[k]}".replace("_", "-") for k in typed_settings(args)
    ]
    if replaced:
        notes.append(f"in place of the card's values: {', '.join(replaced)}")
    return notes


def model_key(name: str) -> str:
    """One name for one model: a folder (or shipped name) as its full path, a Hub id as it is."""
    from .model_paths import model_path

    try:
        path = model_path(name)
    except ValueError:
        return name
    return str(Path(path).resolve()) if Path(path).is_dir() else path


def recorded_model(model: str) -> str:
    """How a tokens file or a run card names its model: a shipped model by its name (the app's, and found from any
    folder or checkout), another folder by its full path (decode may run from another folder), a Hub id as it is."""
    from .model_paths import ASSETS, shipped_models

    path = Path(model_key(model))
    if path.parent == ASSETS.resolve() and path.name in shipped_models():
        return path.name
    return str(path) if path.is_dir() else model


def prompt_in_known_words(pipe, prompt: str) -> str:
    """`prompt` in the model's training words (`Vocabulary.in_known_words`), said on stderr when it changed."""
    from .vocabulary import Vocabulary, split_words

    vocabulary = Vocabulary.for_pipeline(pipe)
    if vocabulary is None:
        raise ValueError("--known-words: this model was published without transformer/vocabulary.json")
    try:
        known = vocabulary.in_known_words(prompt, (pipe.tokenizer, pipe.text_encoder))
    except ValueError as e:  # a negation: no rewrite keeps its meaning
        raise ValueError(f"--known-words: {e}") from None
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
    from .captioning import NAMES_NOTHING, RANK_NOISES, RANK_TIMESTEPS, caption_candidates, explained
    from .images import check_side, fit_square, load_image
    from .pipeline import MMGenPipeline
    from .tokens import default_model
    from .vocabulary import Vocabulary

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    image = load_image(args.image)  # fail on a bad file (or captions file) before paying for the model load
    check_side(image)  # before the model loads
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
    image, note = fit_square(image, pipe.image_size)  # as the app's Image -> text tab reads it
    if note:
        print(f"note: {note}", file=sys.stderr)
    vocabulary = None if captions else Vocabulary.for_pipeline(pipe)  # read once: caption_candidates takes it
    if not captions and vocabulary is None:
        raise ValueError(
            "this model was published without a vocabulary (transformer/vocabulary.json), so it has no captions to "
            "choose from: rank your own with --captions FILE (one per line)"
        )
    if captions and len(captions) > RANKED_QUIETLY:  # ~0.1 s each on a 2-core CPU: say so before minutes of quiet
        copies = len(RANK_TIMESTEPS) * RANK_NOISES
        print(f"ranking {len(captions):,} captions ({copies} noised copies each through the DiT) ...", file=sys.stderr)
    ranked = pipe.rank_captions(image, captions) if captions else caption_candidates(pipe, image, vocabulary)
    print("denoising error (lower: the model finds the caption more likely)")
    for text, error in ranked[: args.top]:
        print(f"{error:.5f}  {text}")
    share = explained(pipe, image, ranked[0][0])
    print(f"the best caption takes away {round(share, 2) or 0.0:.0%} of the error the empty prompt leaves")
    if share < NAMES_NOTHING:
        why = "they may not describe the image" if captions else "the image may hold nothing the model can name"
        print(f"warning: hardly more likely than no caption: {why}", file=sys.stderr)


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
        if args.command == "eval-generator" and args.out is None:  # a sweep never writes over held-out results
            args.out = "eval/generator_sweep.json" if args.sweep else "eval/generator.json"
        if args.command == "eval-caption" and args.out is None:  # nor does a tuning study
            args.out = "eval/caption_tuning.json" if args.tune else "eval/caption.json"
        from .model_paths import refuse_model_file

        refuse_model_file(args.out)
        output_file(args.out, "--out", (".json",))
    elif args.command == "compare-tokenizers":
        if args.out and any(Path(args.out).resolve() == Path(image).resolve() for image in args.images):
            raise ValueError(f"--out {args.out} is one of the images compared: name another file for the picture")
        output_file(args.out, "--out", image_suffixes())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # builds the options of the command named only: its modules (torch, diffusers) load here
        args = build_parser(command_of(argv)).parse_args(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        check_results_file(args)
        if args.command not in ("shapes", "data"):  # the commands that load no model
            quiet_loading()
        args.func(args)
    except (
        ValueError,
        OSError,
        SafetensorError,
    ) as e:  # an ImageLoadError is a ValueError; SafetensorError: a full disk
        rank = int(os.environ.get("RANK", "0"))  # under `accelerate launch`: every process met the same bad option
        if rank == 0 or not isinstance(e, ValueError):
            sys.stderr.write(f"{f'[process {rank}] ' if rank else ''}error: {e}\n")  # one write: not run together
        return 2
    except RuntimeError as e:  # out of memory (torch's CPU allocator, CUDA, MPS): a line saying what to change
        if not (what := out_of_memory(e)):
            raise
        if os.environ.get("RANK", "0") == "0":
            sys.stderr.write(f"error: out of memory ({what}): {memory_advice(args)}\n")
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: a line, not a traceback; a training run keeps its last checkpoint
        train = args.command.startswith("train")
        said = "interrupted" + (f": {e}" if str(e) else "") + (resume_hint(args) if train else "")
        if os.environ.get("RANK", "0") == "0":  # said once under `accelerate launch`
            sys.stderr.write(("\n" + said if train else said) + "\n")  # a training run's progress bar holds the line
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
