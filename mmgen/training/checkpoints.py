"""Checkpoint folders and run logs shared by the trainers: `OUT/checkpoints/step-N/`, `OUT/train_log.jsonl`."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

CHECKPOINT_NAME = re.compile(r"step-(\d+)")
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)  # torch.save says a full disk with a RuntimeError


def checkpoints(out: Path) -> list[Path]:
    """OUT/checkpoints/step-N folders, oldest first (other names there, e.g. a copy someone made, are not ones)."""
    found = [p for p in (Path(out) / "checkpoints").glob("step-*") if CHECKPOINT_NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed from (a file cut short, say by a full disk, or unreadable), or None. Reads each
    file as resuming will: safetensors' headers, which cover the file's length, and the .pt states whole."""
    path = ckpt / "training_state.pt"
    try:
        if not path.is_file():
            return "no training_state.pt"
        for path in sorted(ckpt.rglob("*")):
            if path.suffix == ".safetensors":
                with safe_open(path, "pt"):
                    pass
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True, map_location="cpu")
    # zeros after a power cut: unpickling; other bytes: a KeyError or RuntimeError from deep in torch.load
    except (*WRITE_ERRORS, EOFError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as e:
        return f"{path.relative_to(ckpt)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def usable_checkpoint(out: Path, say: Callable[[str], object] = print) -> Path | None:
    """The newest checkpoint in OUT that can be resumed from (None: there is none), saying which were passed over;
    ValueError when there are checkpoints and none is whole."""
    found = checkpoints(out)
    for ckpt in reversed(found):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        say(f"checkpoint {ckpt} is damaged ({problem}): passed over")
    if found:
        raise ValueError(f"no checkpoint in {Path(out) / 'checkpoints'} is whole: delete the folder to train again")
    return None


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoints(out)
    return found[-1] if found else None


def prune_checkpoints(out: Path, keep: int = 2) -> None:
    """All but the newest `keep` checkpoints removed, and any partial one a killed run left."""
    for old in [*checkpoints(out)[:-keep], *(Path(out) / "checkpoints").glob(".step-*.partial")]:
        shutil.rmtree(old)


@contextmanager
def writing_checkpoint(out: Path, step: int, keep: int = 2) -> Iterator[Path]:
    """The folder to write step `step`'s checkpoint into. It is written under a hidden name and renamed to
    `step-N` only once whole, so a run killed while writing leaves no half checkpoint for --resume to trip on;
    then all but the newest `keep` are removed."""
    partial = Path(out) / "checkpoints" / f".step-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except WRITE_ERRORS as e:  # a full disk: no half checkpoint stays behind, and the run says why it stopped
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(f"could not write the checkpoint of step {step} into {out} (is the disk full?): {e}") from e
    except BaseException:  # an interrupt
        shutil.rmtree(partial, ignore_errors=True)
        raise
    final = partial.with_name(f"step-{step}")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    prune_checkpoints(out, keep)


@contextmanager
def saving_model(path: Path) -> Iterator[None]:
    """Around the save of a run's trained model: a full disk ends the run with one line that says how to go on."""
    try:
        yield
    except WRITE_ERRORS as e:
        shutil.rmtree(path, ignore_errors=True)  # half a model would read as a trained one
        raise OSError(
            f"could not save the trained model into {path} (is the disk full?): {e}. Make room, then run the same "
            "command again (with --resume, unless it is a recipe): it continues from the last checkpoint"
        ) from e


# Options a resumed run may change: where and how fast it runs, how often it reports. A resumed run's weights
# come from its checkpoint, so --init-from (and --grow-depth) no longer matter either.
RESUME_MAY_CHANGE = frozenset(
    {"resume", "recipe", "log_every", "val_every", "checkpoint_every", "num_workers", "cache_dir", "compile"}
    | {"mixed_precision", "channels_last", "cpu", "init_from", "grow_depth", "out"}
)


def run_to_continue(args, weights: str, say: Callable[[str], object] = print, num_processes: int = 1) -> Path | None:
    """The checkpoint a run into `args.out` continues from (None: it starts from step 0), or ValueError where
    training would overwrite work: a finished run or a trained model (`OUT/weights`, e.g. "transformer"), or,
    without --resume, an unfinished run's checkpoints. --resume with other settings than the run's log is refused
    too (RESUME_MAY_CHANGE aside): they would be ignored, or would change the run halfway. So is a resume under
    another number of processes than the run's header logs (`num_processes`; a log without it ran before it was
    logged, and is not checked): the global batch would change, and the LR schedule, built over steps x processes,
    would go on at the old count's position."""
    if not str(args.out).strip():
        raise ValueError("--out is empty: name the run's folder (e.g. --out runs/mine)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if (out / "model_index.json").is_file() or (
        out.is_dir() and not (out / "train_log.jsonl").exists() and any(f.name != "checkpoints" for f in out.iterdir())
    ):  # a published model, the assets/ folder, a folder of images: not a run, whatever --resume says
        raise ValueError(
            f"--out {out} holds other files than a run's (a published model, images, other folders): train into a "
            f"new or empty folder; to train on from a model, --init-from {out} --out ANOTHER_FOLDER"
        )
    records = read_records(out / "train_log.jsonl")
    done = bool(records) and bool(records[-1].get("done"))
    ckpt = latest_checkpoint(out) if out.is_dir() else None
    if args.resume and ckpt is not None and not done:
        ckpt = usable_checkpoint(out, say)
    model = (out / weights / "config.json").is_file()
    if not args.resume:
        if done or model or ckpt:
            held = "a trained model" if done or not ckpt else f"an unfinished run (its last checkpoint: {ckpt.name})"
            raise ValueError(
                f"--out {out} already holds {held}. Train into another --out, continue an unfinished run with "
                "--resume, or delete the folder to start again."
            )
        return None
    if done:
        raise ValueError(
            f"--out {out} holds a finished run: --resume continues an interrupted one. To train it further, start a "
            f"new run from it: --init-from {out} --out ANOTHER_FOLDER."
        )
    if model and ckpt is None:
        raise ValueError(f"--out {out}: its run stopped while saving and left no checkpoint; delete it to train again")
    if ckpt is None:
        say(f"no checkpoint in {out / 'checkpoints'}; starting from scratch")
        return None
    headers = [r for r in records if "command" in r]
    ran = headers[-1].get("num_processes", num_processes) if headers else num_processes
    if ran != num_processes:
        relaunch = (
            "plain `mmgen`" if ran == 1 else f"`accelerate launch --multi_gpu --num_processes {ran} -m mmgen.cli`"
        )
        raise ValueError(
            f"--resume: {out} trained with {ran} process(es), this run has {num_processes}; another count would "
            f"change its global batch and LR schedule halfway. Resume it with {ran} ({relaunch}), or start a new run."
        )
    logged = headers[-1].get("args", {}) if headers else {}
    given = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)}
    differ = [k for k in logged if k in given and k not in RESUME_MAY_CHANGE and not _same(given[k], logged[k])]
    if differ:
        said = ", ".join(f"--{k.replace('_', '-')} {given[k]} (the run: {logged[k]})" for k in differ)
        raise ValueError(
            f"--resume continues {out} with the settings it started with; these differ: {said}. Give the run's "
            f"values (its command heads {out / 'train_log.jsonl'}), or start a new run."
        )
    return ckpt


def _same(given, logged) -> bool:
    """Whether an option has its logged value; paths as written differently ("runs/x/", "./runs/x") are equal."""
    if isinstance(given, str) and isinstance(logged, str) and given and logged:
        return os.path.normpath(given) == os.path.normpath(logged)
    return given == logged


def read_records(path: Path) -> list[dict]:
    """A run log's records; a line that is not JSON (a killed run's last, cut short) is left out."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def launched_as() -> str:
    """The command a run's log says it was: "mmgen", or under `accelerate launch` (its processes run `python -m
    mmgen.cli`) the launch, so the log's command can be run again as written."""
    name = Path(sys.argv[0]).name
    if name not in ("cli.py", "__main__.py"):
        return name
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:
        return f"accelerate launch --multi_gpu --num_processes {processes} -m mmgen.cli"
    return "python -m mmgen.cli"


def start_log(path: Path, args, previous: list[str] = (), **extra) -> None:
    """Start a run's log with a header line: the exact command, its settings, and anything else worth keeping.
    A run that continues another (a second training stage) writes that run's log lines first, so one file holds
    every stage, each opened by its own header (`"stage": 1, 2, ...`)."""
    command = " ".join([launched_as(), *sys.argv[1:]])
    settings = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)}
    stage = 1 + sum("command" in json.loads(line) for line in previous)
    header = json.dumps({"command": command, "args": settings, "stage": stage, **extra})
    Path(path).write_text("".join(line.rstrip("\n") + "\n" for line in previous) + header + "\n")


def previous_log(model: str | None, published: str) -> list[str]:
    """The training log of the run or model folder an --init-from run starts from (a run's `train_log.jsonl`, a
    model folder's `published` log, e.g. `generator_train_log.jsonl`), so the new log tells the whole story; none
    for a Hub id."""
    for name in ("train_log.jsonl", published):
        if model and (Path(model) / name).is_file():
            return (Path(model) / name).read_text().splitlines()
    return []


def log_stages(lines: list[dict]) -> list[list[dict]]:
    """A log's records split into its stages, each starting with its header (the line with "command")."""
    stages = []
    for record in lines:
        if "command" in record or not stages:
            stages.append([])
        stages[-1].append(record)
    return stages


def open_run_log(path: Path, args, start_step: int, previous: list[str] = (), **header) -> float:
    """A run's log as it starts: a new one, its header after `previous` (the log of the run it starts from), or a
    resumed run's, cut back to its checkpoint. Returns the training time spent before (0 for a new run)."""
    if start_step == 0:
        start_log(path, args, previous, **header)
        return 0.0
    return resume_log(path, start_step, {k: v for k, v in header.items() if k in RESUME_CHANGES_SAID})


RESUME_CHANGES_SAID = ("mixed_precision", "hardware")  # may differ on --resume; the header then says both


def resume_log(path: Path, step: int, now: dict | None = None) -> float:
    """A resumed run's log cut back to its checkpoint's `step`: the records of the steps after it, logged before
    the run stopped and about to be logged again, go. Where the resumed run differs from the header in `now`
    (RESUME_CHANGES_SAID: "bf16" where it started with "no"), the header says both ("no to step 500, then bf16"),
    and the card with it. Returns the training time at the checkpoint (its last kept record's elapsed_s), for the
    resumed run to count on from."""
    records = read_records(Path(path))
    header = max((i for i, r in enumerate(records) if "command" in r), default=-1)  # this stage's
    for key, value in (now or {}).items():
        if header >= 0 and records[header].get(key) not in (None, value):
            records[header][key] = f"{records[header][key]} to step {step}, then {value}"
    kept = records[: header + 1] + [r for r in records[header + 1 :] if r.get("step", 0) <= step]
    partial = Path(path).with_suffix(".partial")  # the log is the run's record: never left half written
    partial.write_text("".join(json.dumps(r) + "\n" for r in kept))
    partial.replace(path)
    return next((r["elapsed_s"] for r in reversed(kept[header + 1 :]) if "elapsed_s" in r), 0.0)


def append_log(path: Path, record: dict) -> None:
    """One JSON line more; a last line cut short by a killed run (no newline) is dropped first, as `read_log`
    leaves it out."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, 2)
            cut = f.read(1) != b"\n"
        if cut:  # rare: read the whole log only then
            text = path.read_bytes()
            path.write_bytes(text[: text.rfind(b"\n") + 1])
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def save_training_state(ckpt: Path, optimizer, scheduler, step: int, generator: torch.Generator | None = None) -> None:
    """Optimizer, LR schedule, step and RNG (the global one, and the trainer's batch `generator` if it has one):
    tensors and numbers only, so loadable with weights_only=True."""
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
    }
    if generator is not None:
        state["generator_rng"] = generator.get_state()
    torch.save(state, Path(ckpt) / "training_state.pt")


def load_training_state(ckpt: Path, optimizer, scheduler, generator: torch.Generator | None = None) -> int:
    """Restore what save_training_state wrote; returns the step to continue from. With the batch RNG saved, the
    resumed run draws the same batches as one that never stopped. A checkpoint from before it was saved reseeds
    `generator` with its seed + step instead: other batches than an unbroken run, still reproducible."""
    state = torch.load(Path(ckpt) / "training_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if generator is not None:
        if "generator_rng" in state:
            generator.set_state(state["generator_rng"])
        else:
            generator.manual_seed(generator.initial_seed() + state["step"])
    return state["step"]
