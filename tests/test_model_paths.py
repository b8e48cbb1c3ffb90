"""Where a model named on the command line is (mmgen/model_paths.py): folders, shipped names, Hub ids, and the
clear one-line errors for anything else."""

import json

import pytest

import mmgen.model_paths
from mmgen.model_paths import ASSETS, local_model_folder, model_path, shipped_models


def test_shipped_names_and_the_repository_paths_resolve_from_any_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"mmgen-base", "mmgen-base-64", "vqgan-f8"} <= set(shipped_models())
    assert model_path("mmgen-base-64") == str(ASSETS / "mmgen-base-64")
    assert model_path("assets/mmgen-base") == str(ASSETS / "mmgen-base")  # the commands' defaults
    (tmp_path / "mine").mkdir()
    assert model_path("mine") == "mine"  # the user's own folder comes first
    assert model_path("someone/their-model") == "someone/their-model"  # left to the Hub
    assert "shape-verifier" not in shipped_models()  # the judge's network is not a model to draw with
    with pytest.raises(ValueError, match="no such model folder"):
        model_path("tests")  # a folder of the repository is not a model: only assets/ is looked in
    with pytest.raises(ValueError, match=r"no such folder here \(the shipped one is .*assets/mmgen-base-64\)"):
        model_path("mmgen-base-64", shipped=False)  # the trainers' check: the name comes back as typed, or fails


def test_every_shipped_model_is_a_tokenizer_by_name_too(tmp_path, monkeypatch):
    from mmgen.tokenizers import load_tokenizer

    monkeypatch.chdir(tmp_path)
    assert load_tokenizer("mmgen-emoji").num_codes == load_tokenizer("assets/mmgen-emoji").num_codes


@pytest.mark.parametrize(
    "given, message",
    [
        ("/no/such/folder", "no such model folder .*shipped models: .*mmgen-base-64"),
        ("mmgen-bsae", "no such model folder"),  # a typo of a shipped name is not sent to the Hub
        ("./someone/model", "no such model folder"),
        ("  ", "no model given"),
    ],
)
def test_names_that_are_nowhere_get_one_clear_line(given, message):
    with pytest.raises(ValueError, match=message):
        model_path(given)


def test_a_name_from_the_environment_says_where_it_came_from(monkeypatch):
    monkeypatch.setenv("MMGEN_MODEL", "nothing")
    with pytest.raises(ValueError, match=r"^nothing \(the name in \$MMGEN_MODEL\): no such model folder"):
        model_path("nothing")


def test_a_mistyped_path_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    """ "runs/gen2" where runs/ is a folder here is a typo, answered at once (offline, the Hub client retries for
    half a minute first); an id whose owner is no folder here still goes to the Hub."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "gen").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"^runs/gen2: no such folder in runs/$"):
        model_path("runs/gen2", shipped=False)
    assert model_path("someone/gen2") == "someone/gen2"
    from mmgen.tokenizers import load_tokenizer

    with pytest.raises(ValueError, match=r"^runs/gen2: no such folder in runs/$"):
        load_tokenizer("runs/gen2")
    with pytest.raises(ValueError, match="nope: not a tokenizer folder .*not a Hugging Face Hub repo id"):
        load_tokenizer("nope")  # every VQ tokenizer on the Hub is owner/name


def test_a_training_run_is_not_loaded_as_a_model(tmp_path):
    from mmgen.pipeline import MMGenPipeline

    (tmp_path / "transformer").mkdir()
    (tmp_path / "train_log.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="a training run's folder, not a published model: publish it first"):
        MMGenPipeline.from_pretrained(tmp_path)


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(ValueError, match="a file, not a model folder"):
        model_path(tmp_path / "README.md")


def test_the_hub_failing_is_one_line_naming_the_repo(monkeypatch):
    def offline(repo, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your internet connection.")

    monkeypatch.setattr(mmgen.model_paths, "snapshot_download", offline)
    with pytest.raises(ValueError, match=r"^someone/model: not a local folder, .*couldn't connect[^\n]*$"):
        local_model_folder("someone/model")


def test_a_model_index_that_is_not_an_object_is_refused(tmp_path):
    from mmgen.pipeline import MMGenPipeline

    (tmp_path / "model_index.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="model_index.json: expected a JSON object"):
        MMGenPipeline.from_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text("{")
    with pytest.raises(ValueError, match="model_index.json: not valid JSON"):
        local_model_folder(tmp_path)
    (tmp_path / "model_index.json").write_text("{}")  # diffusers' KeyError: '_class_name', a traceback
    with pytest.raises(ValueError, match="model_index.json: no _class_name: not a pipeline's model_index.json"):
        MMGenPipeline.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no such model folder"):
        MMGenPipeline.from_pretrained("/no/such/folder")


def test_the_models_find_a_shipped_model_by_name_from_any_folder(tmp_path, monkeypatch):
    """The README's `VQVAE.from_pretrained("assets/mmgen-base-64", subfolder="vqvae")` failed outside the repository's
    root (diffusers took it for a Hub id), while the pipeline and every command found it."""
    from mmgen import VQVAE
    from mmgen.models.dit import DiT

    monkeypatch.chdir(tmp_path)
    assert VQVAE.from_pretrained("assets/vqgan-f8", subfolder="vqvae").config.num_codes == 1024
    assert VQVAE.from_pretrained("vqgan-f8", subfolder="vqvae").config.num_codes == 1024
    assert DiT.from_pretrained("mmgen-base-64", subfolder="transformer").config.sample_size == 16
