"""Export a model folder that plain diffusers loads, without mmgen installed: `mmgen export-hub MODEL --out DIR`.

    pipe = DiffusionPipeline.from_pretrained(DIR, trust_remote_code=True)   # diffusers, transformers, einops

diffusers' custom-code convention (https://huggingface.co/docs/diffusers/using-diffusers/custom_pipeline_overview):
`model_index.json` names the pipeline as `["<file>", "<class>"]` with `<file>.py` at the root, and each custom
component as `["<file>", "<class>"]` with `<file>.py` in the component's folder. The exported code is mmgen's own
source, copied module by module with package-relative imports flattened (`from .models.dit import DiT` becomes
`from .mmgen_models_dit import DiT`, each module one file `mmgen_<dotted path>.py`): the folder runs exactly the
code this mmgen runs, and nothing in it imports `mmgen`.

For a local folder, diffusers copies only the modules that the loaded file itself imports; the pipeline file
therefore also names the modules further down its import chain. The text encoder (all-MiniLM-L6-v2, which
mmgen's model folders leave out) is saved into `text_encoder/` and `tokenizer/`, so the folder works offline.
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
    """mmgen.models.dit -> mmgen_models_dit: the exported file (and module) name of an mmgen module."""
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
    """`top` and its closure as flat files: {file name: source}."""
    chain = closure(top)
    return {f"{flat_name(m)}.py": bundled_source(m, chain if m == top else None) for m in chain}


def component_code(folder: str, module: str, cls: str) -> tuple[str, dict[str, str]]:
    """A component's code: `module` and its closure, and a small entry file re-exporting `cls`; returns the entry's
    module name and {file name: source}. diffusers runs the entry file afresh for each component, and an entry that
    only imports keeps one class object for the pipeline's type check and the loaded component alike."""
    chain = closure(module)
    files = {f"{flat_name(m)}.py": bundled_source(m) for m in chain}
    entry = f"modeling_{PREFIX}_{module.rpartition('.')[2]}"
    lines = [f'"""The `{folder}` component: {module}.{cls}, exported by `mmgen export-hub`."""\n\n']
    lines.append(f"from .{flat_name(module)} import {cls}  # noqa: F401\n")
    lines += [f"from .{flat_name(m)} import __name__ as _{flat_name(m)}  # noqa: F401\n" for m in chain[1:]]
    files[f"{entry}.py"] = "".join(lines)
    return entry, files


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
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; choose a new folder")
    code = {Path(name): text for name, text in pipeline_code(PIPELINE[0]).items()}  # all code first: fail early
    index["_class_name"] = [flat_name(PIPELINE[0]), PIPELINE[1]]
    for name, (module, cls) in COMPONENTS.items():
        entry, files = component_code(name, module, cls)
        code.update({Path(name) / file: text for file, text in files.items()})
        index[name] = [entry, cls]
    created = not out.exists()
    try:
        _write(src, out, index, code)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


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
    card = out / "README.md"
    card.write_text((card.read_text() if card.exists() else f"# {src.name}\n") + USAGE.format(folder=out.name))


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
