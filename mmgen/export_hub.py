"""Export a model folder that plain diffusers loads, without mmgen installed: `mmgen export-hub MODEL --out DIR`.

    pipe = DiffusionPipeline.from_pretrained(DIR, trust_remote_code=True)   # diffusers, transformers, einops

diffusers' custom-code convention (https://huggingface.co/docs/diffusers/using-diffusers/custom_pipeline_overview):
`model_index.json` names the pipeline as `["<file>", "<class>"]` with `<file>.py` at the root, and each custom
component as `["<file>", "<class>"]` with `<file>.py` in the component's folder. The exported code is mmgen's own
source, copied module by module with package-relative imports flattened (`from .models.dit import DiT` becomes
`from .mmgen_models_dit import DiT`, each module one file `mmgen_<dotted path>.py`): the folder runs exactly the
code this mmgen runs, and nothing in it imports `mmgen`.

For a local folder, diffusers copies only the modules that the loaded file itself imports; the pipeline file
therefore also names the modules further down its import chain. From the Hub it downloads a component's entry
file alone, none beside it: each component's code is therefore one file, its module and the mmgen modules it
imports merged (`merged_source`), and the pipeline imports the component's class from the same file. The text
encoder (all-MiniLM-L6-v2, which mmgen's model folders leave out) is saved into `text_encoder/` and
`tokenizer/`, so the folder works offline.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
from pathlib import Path

PIPELINE = ("mmgen.pipeline", "MMGenPipeline")
COMPONENTS = {"transformer": ("mmgen.models.dit", "DiT"), "vqvae": ("mmgen.models.vqvae", "VQVAE")}
COMPONENT_MODULES = {module for module, _ in COMPONENTS.values()}
PREFIX = "mmgen"  # every exported module's file name starts with it: no clash with other custom code
IMPORT_HEAD = re.compile(r"from\s+[.\w]+\s+import")
COPY_NOTE = (
    "\n\n# Written by `mmgen export-hub`: diffusers copies only the modules that a local pipeline file imports\n"
    "# itself, so the modules further down the import chain are named here as well.\n"
)
USAGE = """
## Load with diffusers alone

This folder was written by `mmgen export-hub`: it carries the pipeline's code (`mmgen_*.py`, and the component
code in `transformer/` and `vqvae/`) and the text encoder (`text_encoder/`, `tokenizer/`), so diffusers loads it
without mmgen and without a network:

```python
import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{folder}", trust_remote_code=True, dtype=torch.float32)
image = pipe("a large red circle in the top left on a white background").images[0]
```

Requirements: `torch`, `diffusers`, `transformers`, `einops`, `numpy`, `pillow`.
"""


def flat_name(module: str) -> str:
    """mmgen.models.dit -> modeling_mmgen_dit (a component's module: its one merged file, `component_code`);
    mmgen.settings -> mmgen_settings: the exported file (and module) name of an mmgen module."""
    if module in COMPONENT_MODULES:
        return f"modeling_{PREFIX}_{module.rpartition('.')[2]}"
    return module.replace(".", "_")


def _parse(module: str) -> tuple[str, ast.Module]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or spec.submodule_search_locations is not None:
        raise ValueError(f"export-hub bundles modules only, and {module} is not one")
    text = Path(spec.origin).read_text()
    return text, ast.parse(text)


def _mmgen_imports(module: str, tree: ast.Module) -> list[tuple[ast.ImportFrom, list[str], str | None]]:
    """Every statement of `module` importing from mmgen (lazy ones inside functions too): the statement, the modules
    it imports, and for `from . import m` (a form diffusers' file copier does not see) the statement replacing it."""
    found = []
    package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PREFIX for a in node.names):
            raise ValueError(f"{module}, line {node.lineno}: write `from ... import ...` to be exportable")
        if not isinstance(node, ast.ImportFrom) or (node.level == 0 and (node.module or "").split(".")[0] != PREFIX):
            continue
        base = (
            importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
        )
        if node.module is not None:
            found.append((node, [base], None))
            continue
        targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if importlib.util.find_spec(target) is None:
                raise ValueError(f"{module}, line {node.lineno}: {target} is not a module; import it from its module")
        names = ", ".join(f"{flat_name(t)} as {a.asname or a.name}" for t, a in zip(targets, node.names))
        found.append((node, targets, f"from . import {names}"))
    return found


def closure(module: str) -> list[str]:
    """`module` and every mmgen module it imports, directly or not, in the order first met."""
    order, todo = [], [module]
    while todo:
        current = todo.pop(0)
        if current not in order:
            order.append(current)
            todo += [t for _, targets, _ in _mmgen_imports(current, _parse(current)[1]) for t in targets]
    return order


def bundled_source(module: str, chain: list[str] | None = None) -> str:
    """The source of `module` with its mmgen imports pointing at the flat exported files; with `chain` (the
    closure of a file diffusers loads directly), imports of every module of it that the copier would not see."""
    text, tree = _parse(module)
    lines = text.splitlines(keepends=True)
    imports = _mmgen_imports(module, tree)
    for node, targets, statement in sorted(imports, key=lambda i: -i[0].lineno):  # bottom up: line numbers hold
        line = lines[node.lineno - 1]
        if statement is None:
            head = IMPORT_HEAD.search(line, node.col_offset)
            lines[node.lineno - 1] = (
                line[: head.start()] + f"from .{flat_name(targets[0])} import" + line[head.end() :]
            )
        else:
            lines[node.lineno - 1 : node.end_lineno] = [line[: node.col_offset] + statement + "\n"]
    seen = {targets[0] for _, targets, statement in imports if statement is None}
    missing = [m for m in chain or [] if m != module and m not in seen]
    if missing:
        lines.append(COPY_NOTE)
        lines += [f"from .{flat_name(m)} import __name__ as _{flat_name(m)}  # noqa: E402,F401\n" for m in missing]
    return "".join(lines)


def pipeline_code(top: str) -> dict[str, str]:
    """`top` and its closure as flat files: {file name: source}. A component's module is its merged file, the same
    as in its folder: loaded from a local folder, diffusers then makes one module of the two, and the pipeline's
    type check and the loaded component see one class."""
    chain = closure(top)
    files = {f"{flat_name(m)}.py": bundled_source(m, chain if m == top else None) for m in chain}
    for folder, (module, cls) in COMPONENTS.items():
        if module in chain:
            files.update(component_code(folder, module, cls)[1])
    return files


def component_code(folder: str, module: str, cls: str) -> tuple[str, dict[str, str]]:
    """A component's code: one file holding `module` and its closure (`merged_source`); returns the file's module
    name and {file name: source}. From the Hub, diffusers downloads a custom component's entry file and nothing
    else of its folder, so the entry must not import files beside it."""
    entry = flat_name(module)
    header = f'"""The `{folder}` component: {module}.{cls} and the mmgen code it needs, by `mmgen export-hub`."""\n\n'
    # diffusers executes the file again into the same module for each load: the class of the first execution is
    # kept, so that the pipeline's own import and the loaded component are one class (its type check passes)
    keep = f"\n\n_first_{cls} = globals().get('_first_{cls}') or {cls}\n{cls} = _first_{cls}\n"
    return entry, {f"{entry}.py": header + merged_source(module) + keep}


def _top_level_imports(module: str) -> list[str]:
    tree = _parse(module)[1]
    return [t for node, targets, _ in _mmgen_imports(module, tree) if node in tree.body for t in targets]


def merged_source(module: str) -> str:
    """`module` and every mmgen module it imports as one source, each module after those it imports at its top
    level, their imports of one another dropped (an `as` name kept by an assignment) and `from __future__ import
    annotations` once at the top. ValueError where merging would change the code: two modules defining the same
    top-level name (the later would replace the earlier's), or an mmgen module imported as a module object."""
    order: list[str] = []

    def visit(m: str) -> None:
        if m not in order:
            for dependency in _top_level_imports(m):
                visit(dependency)
            order.append(m)

    for m in closure(module):
        visit(m)
    parts, defined = ["from __future__ import annotations\n"], {}
    for m in order:
        text, tree = _parse(m)
        lines = text.splitlines(keepends=True)
        for name in _top_level_names(tree):
            if defined.setdefault(name, m) != m:
                raise ValueError(f"{defined[name]} and {m} both define {name}: rename one to export them as one file")
        drop = [(node, None) for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "__future__"]
        drop += [(node, statement) for node, _, statement in _mmgen_imports(m, tree)]
        for node, statement in sorted(drop, key=lambda d: -d[0].lineno):  # bottom up: line numbers hold
            if statement is not None:
                raise ValueError(f"{m}, line {node.lineno}: import names, not modules, to export it as one file")
            aliases = "; ".join(f"{a.asname} = {a.name}" for a in node.names if a.asname and a.asname != a.name)
            indent = lines[node.lineno - 1][: node.col_offset]
            lines[node.lineno - 1 : node.end_lineno] = [f"{indent}{aliases or 'pass'}  # merged: {m}'s import\n"]
        parts.append(f"\n\n# ---- {m} ----\n" + "".join(lines))
    return "".join(parts)


def _top_level_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def export_hub(model: str | Path, out: str | Path) -> Path:
    """Write `out`: `model` (a model folder or Hub id holding an MMGenPipeline) with its code and text encoder."""
    from .model_paths import local_model_folder

    src = Path(local_model_folder(model))
    index_path = src / "model_index.json"
    if not index_path.is_file():
        raise ValueError(f"{model}: no model_index.json; export-hub needs an mmgen model folder")
    index = json.loads(index_path.read_text())
    if index.get("_class_name") != PIPELINE[1] or any(name not in index for name in COMPONENTS):
        raise ValueError(f"{model}: not an {PIPELINE[1]} folder with {' and '.join(COMPONENTS)}")
    _check_weights(src, model)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: name a new folder for the export")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; choose a new folder")
    if out.resolve().is_relative_to(src.resolve()):  # the model would carry its export, and the next one both
        raise ValueError(f"{out} is inside {model}: export into a folder outside the model")
    code = {Path(name): text for name, text in pipeline_code(PIPELINE[0]).items()}  # all code first: fail early
    index["_class_name"] = [flat_name(PIPELINE[0]), PIPELINE[1]]
    for name, (module, cls) in COMPONENTS.items():
        entry, files = component_code(name, module, cls)
        code.update({Path(name) / file: text for file, text in files.items()})
        index[name] = [entry, cls]
    created = not out.exists()
    try:
        _write(src, out, index, code)
    except BaseException:  # (a full disk, Ctrl-C): no half export left, in a new folder or one that was empty
        shutil.rmtree(out, ignore_errors=True)
        if not created:
            out.mkdir()
        raise
    return out


def is_export(index: dict) -> bool:
    """Whether a model_index.json is one `export_hub` wrote (the pipeline names its own code)."""
    return index.get("_class_name") == [flat_name(PIPELINE[0]), PIPELINE[1]]


def check_savable(pipe) -> None:
    """ValueError for a pipeline that runs an exported folder's own code (loaded by diffusers with
    trust_remote_code): diffusers would save a folder that names that code without carrying it, which nothing
    loads."""
    if type(pipe.transformer).__module__.startswith("diffusers_modules."):  # diffusers' home of remote code
        raise ValueError(
            "this pipeline runs an exported folder's own code (mmgen export-hub), which save_pretrained cannot "
            "write: copy that folder instead, or load it with mmgen (MMGenPipeline.from_pretrained) and save that"
        )


def load_export(cls, folder: str | Path, index: dict, kwargs: dict):
    """An exported folder loaded by mmgen (`MMGenPipeline.from_pretrained`) with its own classes, where diffusers
    would ask to run the folder's copy of them as remote code: each component from its folder (or as passed in
    `kwargs`), the DiT and tokenizer in the dtype asked for (float32 by default), the text encoder in float32."""
    import diffusers
    import torch
    import transformers

    from .models.dit import DiT
    from .models.vqvae import VQVAE

    own, parts = {"transformer": DiT, "vqvae": VQVAE}, {}
    for name in ("vqvae", "transformer", "text_encoder", "tokenizer", "scheduler"):
        library, class_name = index[name]
        loader = own.get(name) or getattr(diffusers if library == "diffusers" else transformers, class_name)
        weights = {"use_safetensors": True} if name in ("vqvae", "transformer", "text_encoder") else {}  # no pickle
        parts[name] = kwargs.get(name) or loader.from_pretrained(str(Path(folder) / name), **weights)
    dtype = kwargs.get("dtype") or kwargs.get("torch_dtype") or torch.float32
    for name in own:
        parts[name] = parts[name].to(dtype)
    return cls(**parts, sampling_defaults=index.get("sampling_defaults"))


def _check_weights(src: Path, model) -> None:
    """ValueError naming the first weights file that safetensors cannot read (a copy cut short, a file that is not
    safetensors): the export copies the files as they are, and the folder would fail only where it is loaded."""
    from safetensors import SafetensorError, safe_open

    files = sorted(src.rglob("*.safetensors"))
    if not files:
        raise ValueError(f"{model}: no .safetensors weights; export-hub needs a saved mmgen model folder")
    for path in files:
        try:
            with safe_open(str(path), "pt") as weights:
                weights.keys()
        except SafetensorError as e:
            raise ValueError(f"{path}: the weights cannot be read ({e}); copy or rebuild the model folder") from None


def _write(src: Path, out: Path, index: dict, code: dict[Path, str]) -> None:
    from .model_paths import readable_weights
    from .models.text_encoder import load_text_encoder

    shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".cache", "*.py"))
    for path, text in code.items():
        (out / path).write_text(text)
    if not all(index.get(n, [None])[0] for n in ("text_encoder", "tokenizer")):
        tokenizer, encoder = load_text_encoder()  # the bundled MiniLM, offline
        encoder.save_pretrained(out / "text_encoder")
        tokenizer.save_pretrained(out / "tokenizer")
        index["text_encoder"] = [type(encoder).__module__.split(".")[0], type(encoder).__name__]
        index["tokenizer"] = [type(tokenizer).__module__.split(".")[0], type(tokenizer).__name__]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    readable_weights(out)  # copytree keeps each file's mode, and safetensors writes its files owner-only
    card = out / "README.md"
    card.write_text(
        (export_card(card.read_text()) if card.exists() else f"# {src.name}\n") + USAGE.format(folder=out.name)
    )


def export_card(text: str) -> str:
    """The model card as the export holds it: tagged `custom_code` (the Hub's tag for code-carrying models), the text
    encoder said to be in it, and links into the mmgen repository (`../...`: its docs, another model's card; dead on
    the Hub) left as their text."""
    text = text.replace("\ntags:\n", "\ntags:\n- custom_code\n", 1)
    text = text.replace("package, not copied here)", "package; in this export: `text_encoder/`, `tokenizer/`)")
    return re.sub(r"(?<!!)\[([^\]]+)\]\(\.\./[^)]*\)", r"\1", text)  # (pictures stay: none points there)


def add_arguments(p):
    p.add_argument("model", help="an mmgen model folder or Hub repo id (model_index.json, transformer/, vqvae/)")
    p.add_argument("--out", required=True, help="a new folder for the export")
    return p


def main(args) -> None:
    """`mmgen export-hub`: write the folder and say how to load it."""
    out = export_hub(args.model, args.out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.0f} MB)")
    print(f'load it with diffusers alone: DiffusionPipeline.from_pretrained("{out}", trust_remote_code=True)')
