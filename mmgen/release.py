"""Publish trained weights into a model folder: fp16 safetensors in the diffusers layout, training logs beside.

    python -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base-64
    python -m mmgen.release --generator runs/generator --scheduler euler-ancestral --out assets/mmgen-base
    python -m mmgen.release --out assets/mmgen-base --card  # rewrite the model card (mmgen/model_card.py)
    python -m mmgen.release --out assets/mmgen-base --vocabulary  # rewrite transformer/vocabulary.json
    python -m mmgen.release --out assets/mmgen-base-64 --sampling  # its recipe's [sampling] into model_index.json
    python -m mmgen.release --examples assets/examples    # the app's example images (mmgen/examples.py)

fp16 halves the files, and larger weights are split into safetensors shards (every shipped file must stay under
10 MB); the model is loaded back in float32, and the evaluation in the model card is run on these fp16 weights,
so the figures describe exactly what ships. A generator goes out with the words of its training captions
(transformer/vocabulary.json, `mmgen.vocabulary`), which the command line and the app check prompts against.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError

from .model_paths import readable_weights, tokenizer_folder
from .models.vqvae import VQVAE
from .settings import SCHEDULER_CLASSES
from .training.checkpoints import read_records

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_SHARD = "8MB"  # safetensors shards (diffusers' sharded checkpoints) keep every shipped file under 10 MB


def check_file_sizes(folder: Path) -> None:
    """Refuse any file under `folder` over the 10 MB limit for shipped files (the Hub and git both prefer less)."""
    for f in folder.rglob("*"):
        if f.is_file() and f.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"{f} is {f.stat().st_size / 2**20:.1f} MB: over the 10 MB limit for shipped files")


def check_folder(path: Path, class_name: str, what: str) -> None:
    """ValueError unless `path` is a saved `class_name` (its config.json says so), before anything is written."""
    from .training.checkpoints import checkpoints

    config = path / "config.json"
    if not path.is_dir() and checkpoints(path.parent):  # its weights are written when it finishes
        raise ValueError(
            f"{path.parent} is an unfinished run (last checkpoint: {checkpoints(path.parent)[-1].name}): finish it "
            "first (its training command again, with --resume), then publish it"
        )
    if not path.is_dir():
        raise ValueError(f"{path}: no such folder ({what})")
    found = json.loads(config.read_text()).get("_class_name") if config.is_file() else None
    if found != class_name:
        raise ValueError(f"{path} is not a saved {class_name} ({what}): its config.json names {found}")


@contextlib.contextmanager
def quiet_diffusers():
    """diffusers' info and warnings off for the block: what it says there is expected, and read as a failure."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def release_vqvae(src: str | Path, out: str | Path) -> Path:
    """Publish a trained tokenizer (`src`, a save_pretrained folder) as OUT/vqvae in fp16, its log beside; the
    old OUT/vqvae is replaced only once the new one is written whole."""
    src, out = tokenizer_folder(src), Path(out)  # a run or model folder too, as train-generator --vqvae takes it
    check_folder(src, "VQVAE", "--vqvae: a trained vqvae/ folder")
    vq = VQVAE.from_pretrained(src, dtype=torch.float16)
    dest, staging = out / "vqvae", out / ".vqvae-publishing"
    if (out / "transformer").is_dir() and (dest / "config.json").is_file():
        if VQVAE.from_pretrained(dest).codebook_fingerprint != vq.codebook_fingerprint:
            print(
                f"warning: {out}/transformer was trained on the codes of the tokenizer this replaces: publish a "
                "generator trained on the new one next (--generator), or the model draws nonsense",
                file=sys.stderr,
            )
    shutil.rmtree(staging, ignore_errors=True)
    try:
        vq.save_pretrained(staging, max_shard_size=MAX_SHARD)  # a large one (f16: 14 MB) in shards, as the DiT
        check_file_sizes(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    readable_weights(dest)
    # its history: a run's train_log.jsonl, or the vqvae_train_log.jsonl a published model folder keeps beside it
    logs = (src.parent / name for name in ("train_log.jsonl", "vqvae_train_log.jsonl"))
    log = next((f for f in logs if f.is_file()), None)
    if log is not None and log.resolve() != (out / "vqvae_train_log.jsonl").resolve():
        shutil.copy(log, out / "vqvae_train_log.jsonl")
    return dest


def adopt_tokenizer(src: str | Path, out: str | Path) -> Path:
    """Copy the published tokenizer `src` names (`tokenizer_folder`) and its training log into OUT, for a generator
    trained on it: a model folder always holds the tokenizer its DiT was trained with."""
    vqvae, out = tokenizer_folder(src), Path(out)
    if not vqvae.is_dir():
        raise ValueError(f"{src} holds no vqvae/ folder to publish beside the generator")
    if vqvae.resolve() == (out / "vqvae").resolve():
        return out / "vqvae"  # already there
    shutil.rmtree(out / "vqvae", ignore_errors=True)
    shutil.copytree(vqvae, out / "vqvae")
    readable_weights(out / "vqvae")
    if (vqvae.parent / "vqvae_train_log.jsonl").exists():
        shutil.copy(vqvae.parent / "vqvae_train_log.jsonl", out / "vqvae_train_log.jsonl")
    return out / "vqvae"


def check_same_codebook(run: Path, out: Path, vq: VQVAE) -> None:
    """ValueError when `run`'s DiT was trained on another codebook than OUT/vqvae's (its log's header records the
    fingerprint; runs from before it was recorded are not checked): it would draw nonsense through that tokenizer."""
    headers = [r for r in read_records(run / "train_log.jsonl") if "command" in r]
    trained = headers[-1].get("codebook_fingerprint") if headers else None
    if trained and trained != vq.codebook_fingerprint:
        used = headers[-1].get("args", {}).get("vqvae")
        raise ValueError(
            f"{run} was trained on the codes of another tokenizer than {out}/vqvae (--vqvae {used}): publish that "
            "one into the model folder first (--vqvae), or a new folder for this generator"
        )


def release_generator(
    run: str | Path, out: str | Path, scheduler: str = "euler-ancestral", sampling: dict | None = None
) -> Path:
    """Add a trained generator (`run`/transformer, EMA weights) to the model folder holding vqvae/: fp16
    transformer/, the sampling `scheduler/` (a SCHEDULERS name, with the training noise schedule) and
    model_index.json, with the model's own `sampling` defaults if any (a recipe's [sampling]). The text encoder
    is not copied: from_pretrained uses the bundled MiniLM."""
    from .models.dit import DiT
    from .pipeline import SCHEDULERS, MMGenPipeline
    from .training.train_generator import training_scheduler
    from .vocabulary import VOCABULARY_FILE, CaptionsNotFound, vocabulary_from_log

    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}: one of {', '.join(sorted(SCHEDULERS))}")
    run, out = Path(run), Path(out)
    if not (out / "vqvae" / "config.json").is_file():
        raise ValueError(f"{out} holds no vqvae/: publish the generator's tokenizer into it first (--vqvae)")
    check_folder(run / "transformer", "DiT", "--generator: a train-generator output folder")
    transformer = DiT.from_pretrained(run / "transformer", dtype=torch.float16)
    vq = VQVAE.from_pretrained(out / "vqvae", dtype=torch.float16)
    check_same_codebook(run, out, vq)
    log = run / "train_log.jsonl"
    try:  # before anything is written: a bad log publishes nothing
        vocabulary, no_captions = vocabulary_from_log(log) if log.exists() else None, None
    except CaptionsNotFound as e:  # trained elsewhere: the model works, without naming words it never saw
        vocabulary, no_captions = None, e
    # The sampling schedule is the run's noise schedule (prediction type, leading timestep spacing: see
    # training_scheduler); runs older than the prediction-type option trained epsilon.
    trained = run / "scheduler"
    config = SCHEDULERS["ddpm"].load_config(trained) if trained.exists() else training_scheduler("epsilon").config
    sched = SCHEDULERS[scheduler].from_config(config)
    parts = {"vqvae": vq, "transformer": transformer, "text_encoder": None, "tokenizer": None, "scheduler": sched}
    pipe = MMGenPipeline(**parts, sampling_defaults=sampling)
    with quiet_diffusers():  # its note that text_encoder=None is not saved: by design (the bundled MiniLM)
        pipe.save_pretrained(out, max_shard_size=MAX_SHARD)  # the fp16 DiT goes out in 8 MB shards + an index
    readable_weights(out)
    if log.exists():
        shutil.copy(log, out / "generator_train_log.jsonl")
    if vocabulary is not None:
        vocabulary.save(out / "transformer" / VOCABULARY_FILE)
    elif no_captions is not None:
        print(
            f"warning: published without transformer/vocabulary.json, so the app and `mmgen generate` cannot name "
            f"the words of a prompt the model never saw (nor `--known-words` rewrite them). {no_captions}; with "
            f"it there, `python -m mmgen.release --out {out} --vocabulary` adds it.",
            file=sys.stderr,
        )
    check_file_sizes(out)
    return out


def write_vocabulary(out: str | Path) -> Path:
    """OUT/transformer/vocabulary.json: the words of every caption the generator trained on, read again from the
    stages its training log names (`mmgen.vocabulary`), so the same log always gives the same file."""
    from .vocabulary import VOCABULARY_FILE, vocabulary_from_log

    out = Path(out)
    return vocabulary_from_log(out / "generator_train_log.jsonl").save(out / "transformer" / VOCABULARY_FILE)


def write_sampling_defaults(out: str | Path, recipe: str | Path) -> Path:
    """Set OUT/model_index.json's `sampling_defaults` to the recipe's [sampling] table (none: null, so the model
    samples at the library's defaults). What publishing a generator writes, for a folder already published."""
    from .training.recipe import load_recipe

    sampling = load_recipe(recipe).sampling
    index_file = Path(out) / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"{out} holds no model_index.json: publish a generator into it first (--generator)")
    index = json.loads(index_file.read_text())
    index["sampling_defaults"] = dict(sorted(sampling.items())) if sampling else None
    index_file.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return index_file


def default_recipe(out: str | Path) -> str | None:
    """recipes/<model name>.toml, where the working directory holds one (the Makefile runs from the repository)."""
    recipe = Path("recipes") / f"{Path(out).name}.toml"
    return recipe.as_posix() if recipe.exists() else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmgen.release", description=__doc__.splitlines()[0])
    p.add_argument("--vqvae", help="a trained tokenizer: its vqvae/ folder, or the run or model folder holding it")
    p.add_argument("--out", help="the model folder to publish into (needed by everything but --examples)")
    p.add_argument("--generator", help="a train-generator output folder (transformer/, scheduler/, train_log.jsonl)")
    p.add_argument(
        "--scheduler",
        default="euler-ancestral",
        choices=sorted(SCHEDULER_CLASSES),
        help="the sampler to ship (default: euler-ancestral, every shipped model's)",
    )
    p.add_argument("--card", action="store_true", help="(re)write OUT/README.md from the logs and evaluations")
    p.add_argument(
        "--vocabulary", action="store_true", help="(re)write OUT/transformer/vocabulary.json from the training log"
    )
    p.add_argument(
        "--sampling", action="store_true", help="(re)write OUT/model_index.json's sampling defaults from the recipe"
    )
    p.add_argument(
        "--recipe",
        help="the recipe the card names and whose [sampling] table --generator and --sampling publish (default: "
        "recipes/<OUT's name>.toml if any)",
    )
    p.add_argument("--examples", help="write the app's example images to this folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        publish(args)
    except (ValueError, OSError, SafetensorError) as e:  # SafetensorError: e.g. a full disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def publish(args: argparse.Namespace) -> None:
    """What the command line asks for, in order: tokenizer, generator, vocabulary, sampling, card, examples."""
    into_model = [f"--{n}" for n in ("vqvae", "generator", "vocabulary", "sampling", "card") if getattr(args, n)]
    if not into_model and not args.examples:
        raise ValueError("nothing to do: give --vqvae, --generator, --vocabulary, --sampling, --card or --examples")
    if into_model and not args.out:
        raise ValueError(f"{' '.join(into_model)}: name the model folder to publish into (--out)")
    recipe = args.recipe or (default_recipe(args.out) if args.out else None)
    if args.generator:  # its recipe and codebook checked before the tokenizer is replaced: a refusal writes nothing
        from .training.recipe import load_recipe

        sampling = load_recipe(recipe).sampling if recipe else None
        if args.vqvae:
            check_folder(tokenizer_folder(args.vqvae), "VQVAE", "--vqvae: a trained vqvae/ folder")
            check_folder(Path(args.generator) / "transformer", "DiT", "--generator: a train-generator output folder")
            check_same_codebook(
                Path(args.generator), Path(args.out), VQVAE.from_pretrained(tokenizer_folder(args.vqvae))
            )
    if args.vqvae:
        print(f"wrote {release_vqvae(args.vqvae, args.out)}")
    if args.generator:
        print(f"wrote {release_generator(args.generator, args.out, args.scheduler, sampling)}")
    if args.vocabulary:
        print(f"wrote {write_vocabulary(args.out)}")
    if args.sampling:
        if recipe is None:
            raise ValueError(
                f"--sampling reads a recipe's [sampling] table: name one (--recipe), none is at "
                f"recipes/{Path(args.out).name}.toml"
            )
        print(f"wrote {write_sampling_defaults(args.out, recipe)}")
    if args.card:
        from .model_card import write_model_card

        print(f"wrote {write_model_card(args.out, recipe)}")
    if args.examples:
        from .examples import write_examples

        print(f"wrote {len(write_examples(args.examples))} images to {args.examples}")


if __name__ == "__main__":
    sys.exit(main())
