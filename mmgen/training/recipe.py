"""Recipes: a shipped model's whole rebuild as data, one TOML file per model, read with the stdlib's `tomllib`.

    mmgen train-tokenizer --recipe recipes/mmgen-base-64.toml   # the [tokenizer] run, published into `model`
    mmgen train-generator --recipe recipes/mmgen-base-64.toml   # every [[generator.stages]] run, in order

A recipe holds `model`, the folder that every stage publishes into (`mmgen.release`); `scheduler`, the sampler
published with the generator; optionally a [sampling] table, the settings the model samples at where they are not
the library's defaults (`num_inference_steps = 30`: chosen on tuning prompts, published in model_index.json); a
[tokenizer] table of train-tokenizer's options (or, for a tokenizer trained in stages, options shared by every
stage plus one [[tokenizer.stages]] table per stage); and for the generator, a [generator] table of options shared
by every stage plus one [[generator.stages]] table per stage, whose own options win. Keys are the trainers'
options as their run logs spell them (`--batch-size 64` is `batch_size = 64`, `--compile` is `compile = true`),
and every stage names its own run folder, `out`. Paths are relative to where the command runs.

Re-running a recipe continues it: a stage whose run finished (its log's last record is `done`) is skipped, and an
interrupted one resumes from its last checkpoint. Other options on the command line apply to every stage (e.g.
--cache-dir, --cpu); one that contradicts the recipe is an error, never silently dropped.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from accelerate import PartialState

from .checkpoints import log_stages
from .processes import GROUP_TIMEOUT, use_cpu
from .run_options import check_run_options

PARTS = ("tokenizer", "generator")
RECIPE_KEYS = ("model", "scheduler", "sampling", *PARTS)
RUNNER_OPTIONS = ("recipe", "resume")  # the runner sets them; a recipe cannot
# diffusers' training scripts' names for the trainers' options, so a recipe written in them gets the name it needs
DIFFUSERS_NAMES = {
    "learning_rate": "lr",
    "train_batch_size": "batch_size",
    "max_train_steps": "steps",
    "output_dir": "out",
    "lr_warmup_steps": "warmup_steps",
    "checkpointing_steps": "checkpoint_every",
}


@dataclass
class Recipe:
    path: Path
    model: str  # the model folder every stage publishes into
    scheduler: str | None  # the sampler published with the generator
    parts: dict[str, list[dict]]  # "tokenizer" / "generator": each stage's options (shared ones merged in)
    sampling: dict | None = None  # the model's own sampling defaults (MMGenPipeline's `sampling_defaults`)


@dataclass
class Stage:
    name: str  # "tokenizer", "generator stage 2"
    args: argparse.Namespace  # the trainer's full options for this stage
    options: dict  # the options the recipe sets, as parsed (checked against a finished run's log)

    @property
    def out(self) -> Path:
        return Path(self.args.out)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe's layout; a missing file, bad TOML or a misplaced key is a `ValueError`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"recipe {path} not found") from None
    except IsADirectoryError:
        raise ValueError(f"recipe {path} is a folder: name a .toml file (e.g. recipes/tiny.toml)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"recipe {path} is not valid TOML: {e}") from None
    where = f"recipe {path}"
    for key in raw:
        if key not in RECIPE_KEYS:
            raise ValueError(f"{where}: unknown key {key!r} (a recipe holds {', '.join(RECIPE_KEYS)})")
    if not isinstance(raw.get("model"), str):
        raise ValueError(f"{where}: `model` must name the model folder that every stage publishes into")
    parts = {}
    if "tokenizer" in raw:
        table = _table(raw["tokenizer"], f"{where}, [tokenizer]")
        # one run, or stages like the generator's (e.g. the decoder fine-tuned after the whole tokenizer)
        parts["tokenizer"] = (
            _stages(raw, "tokenizer", where) if "stages" in table else [_options(table, f"{where}, [tokenizer]")]
        )
    if "generator" in raw:
        parts["generator"] = _stages(raw, "generator", where)
        from ..pipeline import SCHEDULERS

        if raw.get("scheduler") not in SCHEDULERS:
            raise ValueError(f"{where}: `scheduler` must be one of {', '.join(sorted(SCHEDULERS))}")
    sampling = raw.get("sampling")
    if sampling is not None:
        from ..settings import model_sampling_defaults

        sampling = _table(sampling, f"{where}, [sampling]")
        try:
            model_sampling_defaults(sampling)
        except ValueError as e:
            raise ValueError(f"{where}, [sampling]: {e}") from None
    return Recipe(path, raw["model"], raw.get("scheduler"), parts, sampling)


def _stages(raw: dict, part: str, where: str) -> list[dict]:
    """[part] options shared by every stage, each [[part.stages]] table's own options winning."""
    shared = dict(_table(raw[part], f"{where}, [{part}]"))
    stages = shared.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{where}: [{part}] needs at least one [[{part}.stages]] table")
    if "out" in shared:
        raise ValueError(f"{where}: `out` belongs in each [[{part}.stages]] table, not in [{part}]")
    shared = _options(shared, f"{where}, [{part}]")
    return [shared | _options(s, f"{where}, {part} stage {i}") for i, s in enumerate(stages, 1)]


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table of options")
    return value


def _options(table, where: str) -> dict:
    for key, value in _table(table, where).items():
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"{where}: {key} must be a string, number or boolean, got {value!r}")
    return table


def recipe_stages(recipe: Recipe, part: str, add_arguments, command_line=None) -> list[Stage]:
    """The recipe's stages of `part` as full option sets of its trainer (`add_arguments` builds its parser), checked
    and converted by that parser. `command_line`: the options the command gave; those off their defaults apply to
    every stage, unless the recipe sets them otherwise (an error)."""
    if part not in recipe.parts:
        raise ValueError(f"recipe {recipe.path} has no [{part}] table")
    parser = add_arguments(argparse.ArgumentParser(exit_on_error=False))
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    defaults = vars(parser.parse_args([]))
    given = {
        k: v
        for k, v in vars(command_line or argparse.Namespace()).items()
        if k in defaults and k not in RUNNER_OPTIONS and v != defaults[k]
    }
    stages, outs = [], set()
    for i, options in enumerate(recipe.parts[part], 1):
        name = f"{part} stage {i}" if part == "generator" or len(recipe.parts[part]) > 1 else part
        where = f"recipe {recipe.path}, {name}"
        argv = []
        for key, value in options.items():
            if key not in actions or key in RUNNER_OPTIONS:
                raise ValueError(f"{where}: unknown option {key!r}{_did_you_mean(key, actions)}")
            argv += _argv(actions[key], key, value, where)
        try:
            args = parser.parse_args(argv)
        except argparse.ArgumentError as e:
            raise ValueError(f"{where}: {e}") from None
        for key, value in given.items():
            if key in options and getattr(args, key) != value:
                raise ValueError(
                    f"{where}: {actions[key].option_strings[0]} {value} on the command line contradicts the "
                    f"recipe's {key} = {getattr(args, key)!r}; edit the recipe instead"
                )
            setattr(args, key, value)
        folder = same_folder(args.out) if "out" in options else None
        if folder is None or folder in outs:
            raise ValueError(f"{where}: every stage needs its own run folder, `out`")
        outs.add(folder)
        args.recipe, args.resume = None, True  # an interrupted stage resumes from its last checkpoint
        stages.append(Stage(name, args, {key: getattr(args, key) for key in options}))
    return stages


def _did_you_mean(key: str, actions: dict) -> str:
    """The end of an unknown option's message: the option meant, where one is close (`batch-size`, `--lr`,
    `learning_rate` -> ...), else where the keys come from."""
    spelled = key.lstrip("-").replace("-", "_")
    if spelled in RUNNER_OPTIONS:
        return f" (the recipe runner sets {spelled} itself: a recipe runs with --recipe FILE and resumes each stage)"
    keys = [k for k in actions if k not in RUNNER_OPTIONS]
    spelled = DIFFUSERS_NAMES.get(spelled, spelled)
    close = [spelled] if spelled in keys else difflib.get_close_matches(spelled, keys, n=1)
    if close:
        return f"; did you mean {close[0]!r}? (keys are the trainer's options with _ for -)"
    return " (keys are the trainer's options with _ for -, e.g. batch_size for --batch-size)"


def _argv(action: argparse.Action, key: str, value, where: str) -> list[str]:
    """One option as the command line would give it, so that the trainer's parser checks types and choices."""
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            return [action.option_strings[0 if value else 1]]
        return [action.option_strings[0]] if value else []
    if isinstance(value, bool):
        raise ValueError(f"{where}: {key} takes a value, not {str(value).lower()}")
    return [f"{action.option_strings[0]}={value}"]  # `=`: a value starting with '-' stays a value


def read_log(log: Path) -> list[dict]:
    """A run's JSON-lines log; a last line cut short (a run killed mid-write) is left out, as the run did not
    finish; any other line that is not JSON is a ValueError naming it."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise ValueError(f"{log}: line {i} is not JSON ({e}); delete that line to go on") from None
    return records


def finished(stage: Stage) -> bool:
    """Whether the stage's run finished (its log's last record is `done`). A run that finished with other settings
    than the recipe's is an error: it would stand in for a stage it is not."""
    log = stage.out / "train_log.jsonl"
    records = read_log(log) if log.is_file() else []
    if not records or not records[-1].get("done"):
        return False
    logged = log_stages(records)[-1][0].get("args", {})  # this run's header (an --init-from run logs its parents')
    differ = {k: (logged[k], v) for k, v in stage.options.items() if k in logged and logged[k] != v}
    if differ:
        said = ", ".join(f"{k} = {was!r} (recipe: {want!r})" for k, (was, want) in differ.items())
        raise ValueError(f"{stage.out} finished with other settings than {stage.name}: {said}; delete it to retrain")
    return True


def run_stages(stages: list[Stage], train: Callable, publish: Callable[[Stage], object]) -> None:
    """Train each unfinished stage and publish it. Before a stage trains, the finished stage before it is published
    again (seconds), so the model folder holds what that stage starts from even if a run stopped while publishing;
    with every stage finished, the last one is, so a rerun mends a publish that was cut short."""
    # The CPU exactly when the trainers' Accelerator will use it: the first PartialState fixes the processes' group,
    # and one made for a GPU that is absent leaves every process of `accelerate launch` on its own, as the main one.
    state, previous, trained = PartialState(cpu=use_cpu(stages[0].args), timeout=GROUP_TIMEOUT), None, False
    for stage in stages:
        if finished(stage):
            state.print(f"{stage.name}: {stage.out} already finished, skipped")
            previous = stage
            continue
        if previous is not None:
            _publish(state, publish, previous)
        state.print(f"{stage.name}: training in {stage.out}")
        train(stage.args)
        _publish(state, publish, stage)
        previous, trained = None, True
    if not trained:
        state.print(
            "every stage has finished: nothing to do but publish the last again (delete a stage's run folder to "
            "train it again)"
        )
        _publish(state, publish, previous)


def _publish(state: PartialState, publish: Callable, stage: Stage) -> None:
    if state.is_main_process:  # under `accelerate launch`, one process writes the model folder
        state.print(f"{stage.name}: publishing {stage.out}")
        publish(stage)
    state.wait_for_everyone()


def check_stage_sources(stages: list[Stage], model: str) -> None:
    """ValueError, before the first stage trains, for a stage's `init_from`, `vqvae` or `data` that names no folder
    here: a typo in stage 2 was found only once stage 1 had trained (hours, in a real recipe). The recipe's model
    folder and the stages' run folders are made by the stages themselves; a Hub id is left to the trainer."""
    from ..model_paths import model_path

    made = {same_folder(p) for p in (model, *(stage.out for stage in stages))}
    for stage in stages:
        for key in ("init_from", "vqvae", "data"):
            value = getattr(stage.args, key, None)
            if not value or value == "shapes" or same_folder(value) in made:
                continue
            if key == "data":
                if not os.path.isdir(os.path.expanduser(value)):
                    raise ValueError(f"{stage.name}: data = {value!r}: no such folder")
                continue
            try:
                model_path(value, shipped=False)
            except ValueError as e:
                raise ValueError(f"{stage.name}: {key} = {value!r}: {e}") from None


def same_folder(path) -> str:
    """A folder's path as a recipe compares them: "runs/a", "runs/a/" and "./runs/a" are one folder."""
    return os.path.normpath(os.path.expanduser(str(path)))


def run_recipe(args: argparse.Namespace, part: str, add_arguments, train: Callable) -> Path:
    """What `mmgen train-tokenizer/train-generator --recipe FILE` runs: the recipe's `part`, stage by stage, each
    published into the recipe's model folder. Returns that folder."""
    from ..release import adopt_tokenizer, release_generator, release_vqvae

    recipe = load_recipe(args.recipe)
    stages = recipe_stages(recipe, part, add_arguments, args)
    for stage in stages:  # every stage's numbers, before the first trains
        check_run_options(stage.args)
    check_stage_sources(stages, recipe.model)
    model = Path(recipe.model)

    def publish(stage: Stage) -> None:
        if part == "tokenizer":
            release_vqvae(stage.out / "vqvae", model)
            return
        adopt_tokenizer(stage.args.vqvae, model)  # a DiT on another folder's tokenizer ships that one
        release_generator(stage.out, model, recipe.scheduler, recipe.sampling)

    run_stages(stages, train, publish)
    return model
