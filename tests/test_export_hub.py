"""`mmgen export-hub`: a folder that diffusers alone loads, checked offline in a process where mmgen cannot be
imported, against mmgen's own pipeline on the same folder."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_pipe

from mmgen.cli import main
from mmgen.export_hub import export_card, export_hub
from mmgen.pipeline import MMGenPipeline

PROMPT = "a large red circle in the top left on a white background"
CALL = dict(num_candidates=1, output_type="np")  # steps: each model's own (the tiny one's 3, mmgen-base's 50)

# Runs in a fresh interpreter: `-I` drops PYTHONPATH, the user site and the working directory from sys.path, and
# the finder below refuses mmgen (installed in editable mode, mmgen would otherwise import through a .pth file).
LOADER = """
import importlib.abc, json, sys

class NoMmgen(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mmgen":
            raise ModuleNotFoundError(f"No module named {{name!r}}")

sys.meta_path.insert(0, NoMmgen())
try:
    import mmgen
    sys.exit("mmgen is importable")
except ImportError:
    pass
import numpy as np, torch
from diffusers import DiffusionPipeline

for folder, out in json.loads(sys.argv[1]):
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    result = pipe({prompt!r}, generator=torch.Generator().manual_seed(0), **{call!r})
    np.savez(out, images=result.images, tokens=result.tokens.numpy(), cls=type(pipe).__module__)
    try:  # diffusers would write a folder naming this code without carrying it: refused, with what to do
        pipe.save_pretrained("copy")
        sys.exit("saved a folder no one could load")
    except ValueError as e:
        assert "runs an exported folder's own code" in str(e), e
print(sorted(m for m in sys.modules if m.split(".")[0] == "mmgen"))
"""


def load_without_mmgen(tmp_path, folders) -> list[dict]:
    """Each exported folder's output from `DiffusionPipeline.from_pretrained` in an interpreter without mmgen."""
    jobs = [(str(f), str(tmp_path / f"{f.name}.npz")) for f in folders]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_MODULES_CACHE=str(tmp_path / "modules"))
    # one thread, as this process (conftest.py): the f8 decoder's convolutions round differently with two
    env.update(OMP_NUM_THREADS=str(torch.get_num_threads()))
    code = LOADER.format(prompt=PROMPT, call=CALL)
    run = subprocess.run(
        [sys.executable, "-I", "-c", code, json.dumps(jobs)], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split("\n")[-2] == "[]"  # nothing named mmgen was imported
    assert "Expected types" not in run.stderr  # one class object per component (see write_component)
    return [dict(np.load(out)) for _, out in jobs]


def reference(folder) -> dict:
    pipe = MMGenPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(PROMPT, generator=torch.Generator().manual_seed(0), **CALL)
    return {"images": out.images, "tokens": out.tokens.numpy()}


def imports_mmgen(path) -> bool:
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    return any(name.split(".")[0] == "mmgen" for name in names)


def test_plain_diffusers_loads_the_export_and_matches_mmgen(tmp_path):
    tiny = make_tiny_pipe()  # carries its own tiny text encoder, and samples at its own steps (CALL sets none)
    own = {"num_inference_steps": 3}
    MMGenPipeline(**tiny.components, sampling_defaults=own).save_pretrained(tmp_path / "tiny")
    tiny = export_hub(tmp_path / "tiny", tmp_path / "tiny-export")
    assert json.loads((tiny / "model_index.json").read_text())["sampling_defaults"] == own
    assert main(["export-hub", "assets/mmgen-base", "--out", str(tmp_path / "base-export")]) == 0
    base = tmp_path / "base-export"

    index = json.loads((base / "model_index.json").read_text())
    assert index["_class_name"] == ["mmgen_pipeline", "MMGenPipeline"]
    assert (
        index["vqvae"] == ["modeling_mmgen_vqvae", "VQVAE"] and (base / "vqvae" / "modeling_mmgen_vqvae.py").is_file()
    )
    assert index["text_encoder"][0] == "transformers" and (base / "text_encoder" / "config.json").is_file()
    assert (base / "tokenizer" / "tokenizer_config.json").is_file()  # MiniLM, which the shipped folder leaves out
    card = (base / "README.md").read_text()
    assert "trust_remote_code=True" in card and "\n- custom_code\n" in card and "](../" not in card
    assert export_card("from [mmgen-base-64](../mmgen-base-64/README.md)'s DiT") == "from mmgen-base-64's DiT"
    code = list(base.rglob("*.py"))
    assert len(code) > 10 and not [p.name for p in code if imports_mmgen(p)]
    for path in code:  # every relative import names a file beside it (what diffusers copies into its cache)
        tree = ast.parse(path.read_text())
        names = [
            n.module or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level for a in n.names
        ]
        assert all((path.parent / f"{name}.py").is_file() for name in names), path

    # What a download from the Hub holds: diffusers fetches a custom component's entry file and weights but no
    # other file of its folder (the root's code it fetches by following the pipeline file's imports)
    hub = tmp_path / "tiny-hub"
    shutil.copytree(tiny, hub)
    for folder in ("transformer", "vqvae"):
        for extra in (hub / folder).iterdir():
            if extra.suffix in (".py", ".json") and extra.name != "config.json" and extra.stem != index[folder][0]:
                extra.unlink()
    assert sorted(p.name for p in (hub / "vqvae").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "modeling_mmgen_vqvae.py",
    ]

    # mmgen reads an export (one fetched from the Hub, say) with its own classes, not as remote code
    assert type(MMGenPipeline.from_pretrained(hub).transformer).__module__ == "mmgen.models.dit"
    assert np.array_equal(reference(hub)["tokens"], reference(tmp_path / "tiny")["tokens"])

    outputs = load_without_mmgen(tmp_path, [tiny, base, hub])
    assert np.array_equal(outputs[2]["tokens"], outputs[0]["tokens"])
    for out, folder in zip(outputs, ["tiny", "assets/mmgen-base"]):
        expected = reference(tmp_path / folder if folder == "tiny" else folder)
        assert str(out["cls"]).startswith("diffusers_modules.")
        assert np.array_equal(out["tokens"], expected["tokens"])
        assert np.array_equal(out["images"], expected["images"])


def test_export_refuses_what_it_cannot_export(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="not an MMGenPipeline folder"):
        export_hub(tmp_path / "other", tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        export_hub("assets/mmgen-base", tmp_path / "full")
    with pytest.raises(ValueError, match="is a file: name a new folder"):
        export_hub("assets/mmgen-base", tmp_path / "full" / "x")
    with pytest.raises(ValueError, match="is inside assets/mmgen-base: export into a folder outside the model"):
        export_hub("assets/mmgen-base", "assets/mmgen-base/export")  # it grew the model by 100 MB, then its exports
    assert not Path("assets/mmgen-base/export").exists()
    assert main(["export-hub", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), "safetensors"])
def test_a_failed_write_leaves_no_half_export(tmp_path, capsys, monkeypatch, error):
    """A disk that fills up (an OSError, or safetensors' own error) is one line, and the folder given, new or
    empty, holds nothing after: a rerun used to be refused as "not empty"."""
    from safetensors import SafetensorError

    from mmgen import export_hub as module

    def fail(src, out, index, code):
        (out / "text_encoder").mkdir(parents=True)
        (out / "model_index.json").write_text("{}")
        raise error if isinstance(error, OSError) else SafetensorError("File too large (os error 27)")

    monkeypatch.setattr(module, "_write", fail)
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        assert main(["export-hub", "assets/mmgen-base-64", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "new").exists() and list((tmp_path / "empty").iterdir()) == []


def test_export_refuses_weights_cut_short(tmp_path, capsys):
    """A model folder whose weights were copied only in part used to export and report success; the export failed
    only where it was loaded."""
    damaged = tmp_path / "damaged"
    shutil.copytree("assets/mmgen-base-64", damaged)
    weights = sorted((damaged / "vqvae").glob("*.safetensors"))[0]
    weights.write_bytes(weights.read_bytes()[:5000])
    assert main(["export-hub", str(damaged), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and weights.name in err and "cannot be read" in err
    assert not (tmp_path / "o").exists()
