"""Where a model named on the command line is: a folder, a shipped model's name, or a Hugging Face Hub repo id.

    model_path("mmgen-base-64")       # ".../assets/mmgen-base-64": a shipped model, from any working folder
    model_path("assets/mmgen-base")   # the folder itself, here or under the repository root (the defaults)
    model_path("owner/name")          # unchanged: diffusers fetches it from the Hub
    model_path("runs/gen2")           # ValueError where runs/ is a folder here: a mistyped path, not a Hub id
    model_path("/no/such/folder")     # ValueError: no such folder (shipped models: ...)

`local_model_folder` also downloads a Hub repo and says why, in one line, when the Hub cannot give it (offline, no
such repo), instead of the Hub client's retries and messages about repo-id syntax. `readable_weights` gives a
published folder's weights the permissions its other files have.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from huggingface_hub import snapshot_download

ROOT = Path(__file__).resolve().parents[1]  # the repository (or installed tree) holding assets/
ASSETS = ROOT / "assets"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name: what the Hub serves models under


def shipped_models() -> list[str]:
    """The names of the model folders under assets/ (a pipeline or a lone component)."""
    if not ASSETS.is_dir():
        return []
    marks = ("model_index.json", "vqvae/config.json")  # a pipeline or a tokenizer (not the judge's verifier)
    return sorted(d.name for d in ASSETS.iterdir() if any((d / m).is_file() for m in marks))


def shipped_folder(name: str) -> str | None:
    """assets/NAME for a shipped model's name, with or without "assets/" (the commands' defaults); else None."""
    name = name.removeprefix("assets/")
    return str(ASSETS / name) if name in shipped_models() else None


def mistyped_path(given: str) -> str | None:
    """Why `given`, an owner/name that is no folder here, is a mistyped local path rather than a Hub repo id: its
    first part is a folder here ("runs/gen2" beside runs/); None when it is not. (Offline, the Hub client would
    retry for half a minute before saying anything.)"""
    parent = Path(given).parent
    if parent == Path(".") or not parent.is_dir():
        return None
    return f"{given}: no such folder in {parent}/"  # not what it holds: the app shows this to visitors


def model_path(name_or_path: str | os.PathLike, shipped: bool = True) -> str:
    """A model folder for `name_or_path`, or a Hub repo id left as it is; a clear ValueError for anything else.
    `shipped=False`: a check only, the name comes back as given (the trainers log and compare what was typed)."""
    given = str(name_or_path).strip()
    if not given:
        raise ValueError("no model given: pass a model folder, a shipped model's name or a Hub repo id")
    if os.path.isdir(os.path.expanduser(given)):
        return os.path.expanduser(given)
    if folder := shipped_folder(given):  # also "assets/mmgen-base", the commands' defaults, from another folder
        if shipped:
            return folder
        raise ValueError(f"{given}: no such folder here (the shipped one is {folder})")
    if os.path.exists(given):
        raise ValueError(f"{given}: a file, not a model folder")
    if HUB_ID.match(given) and not given.startswith(("./", "../")) and not os.path.isabs(given):
        if typo := mistyped_path(given):
            raise ValueError(typo)
        return given
    names = ", ".join(shipped_models()) or "none here"
    whence = " (the name in $MMGEN_MODEL)" if os.environ.get("MMGEN_MODEL", "").strip() == given else ""
    raise ValueError(
        f"{given}{whence}: no such model folder (shipped models: {names}), and not a Hugging Face Hub repo id "
        "(owner/name)"
    )


def local_model_folder(name_or_path: str | os.PathLike, **hub_kwargs) -> str:
    """`model_path`, with a Hub repo downloaded (cached) into a local folder; ValueError saying why it cannot be."""
    path = model_path(name_or_path)
    if not os.path.isdir(path):
        try:
            path = snapshot_download(path, **hub_kwargs)
        except Exception as e:  # offline, no such repo, gated, a server error: all one answer for the user
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"{path}: not a local folder, and the Hugging Face Hub could not give it ({first_line})"
            ) from None
    index = Path(path) / "model_index.json"
    if not index.is_file() and (Path(path) / "train_log.jsonl").is_file():
        raise ValueError(
            f"{path} is a training run's folder, not a published model: publish it first (python -m mmgen.release "
            "--vqvae or --generator, docs/own-data.md) and load the folder it writes"
        )
    if index.is_file():
        try:
            config = json.loads(index.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{index}: not valid JSON ({e})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{index}: expected a JSON object (a pipeline's components), got {type(config).__name__}")
        if "_class_name" not in config:  # diffusers' KeyError, a traceback, otherwise
            raise ValueError(f"{index}: no _class_name: not a pipeline's model_index.json (damaged, or overwritten?)")
    return os.path.abspath(path)  # files found beside the weights later (vocabulary.json) survive a chdir


class ShippedNames:
    """Mixed into mmgen's models (before diffusers' ModelMixin): `from_pretrained` also finds a shipped model by its
    name ("mmgen-base-64", "assets/mmgen-base-64") from any working folder, as `MMGenPipeline.from_pretrained` and
    every command do (diffusers read "assets/..." as a Hub id outside the repository's root)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        given = str(pretrained_model_name_or_path)
        if not os.path.isdir(os.path.expanduser(given)) and (folder := shipped_folder(given)):
            pretrained_model_name_or_path = folder
        where = os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        asked_info = kwargs.pop("output_loading_info", False)
        try:  # a config.json edited into nonsense (0 heads, a word for a size) fails while the model is built
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        except ValueError as e:  # the model's own checks (a grid that does not split into patches, ...)
            raise ValueError(f"{where}: {e}") from None
        except (TypeError, ZeroDivisionError, RuntimeError) as e:
            said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__  # torch's run to 10 lines
            raise ValueError(f"{where}: no {cls.__name__} can be built from its config.json ({said})") from None
        # Weights that do not fit the config (a depth edited, another model's file) left layers on the meta
        # device, or drew random ones, with only a warning.
        if unfit := [*info["missing_keys"], *info["unexpected_keys"], *info["mismatched_keys"]]:
            named = ", ".join(str(k) for k in unfit[:3]) + (", ..." if len(unfit) > 3 else "")
            raise ValueError(f"{where}: its weights do not fit its config.json ({len(unfit)} tensors differ: {named})")
        return (model, info) if asked_info else model


def tokenizer_folder(path: str | os.PathLike) -> Path:
    """The vqvae/ folder a --vqvae names: PATH/vqvae of a model or run folder, or PATH itself when it is one (or is
    no folder: the caller says so)."""
    path = Path(path)
    lone = not path.is_dir() or ((path / "config.json").is_file() and not (path / "vqvae").is_dir())
    return path if lone else path / "vqvae"


def readable_weights(folder: Path) -> None:
    """Give the safetensors files under `folder` the permissions the umask allows, as every other file has:
    safetensors (0.8) writes its files owner-only, and a folder copied to a server running as another user
    (a container, a shared machine) could not load them."""
    mask = os.umask(0)
    os.umask(mask)
    for f in folder.rglob("*.safetensors"):
        f.chmod(0o666 & ~mask)


MODEL_PARTS = ("vqvae", "transformer", "scheduler", "text_encoder", "tokenizer")  # a model folder's components


def refuse_model_file(path: str | None) -> None:
    """ValueError for an evaluation's --out that is a model's own file (a component's, or its model_index.json): a
    results JSON written there left the model unloadable."""
    if path is None:
        return
    p, folder = Path(path), Path(path).parent
    component = folder.name in MODEL_PARTS and any(
        f.is_file() for f in (folder / "config.json", folder.parent / "model_index.json")
    )
    if p.name == "model_index.json" or p.suffix == ".safetensors" or component:  # ("results/tokenizer/": a user's)
        raise ValueError(f"--out {path} is a model's own file: name the results file beside them (MODEL/eval_*.json)")
