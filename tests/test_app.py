"""The app, launched locally on a tiny pipeline and called through gradio_client, the way outside code uses it.

Every public endpoint is exercised here; the real browser is driven in test_browser.py.
"""

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import ValidationError  # noqa: E402
from PIL import Image  # noqa: E402

from mmgen.data.shapes import shapes_sample  # noqa: E402
from mmgen.settings import DEFAULT_CODEBOOK_SNAP, DEFAULT_GUIDANCE_INTERVAL  # noqa: E402

GENERATE = (
    "a red circle",
    4,
    2.0,
    7,
    False,
    "ddim",
    DEFAULT_CODEBOOK_SNAP,
    1,
    False,
)  # prompt, steps, guidance, seed, random, scheduler, codebook snap, candidates, overlay


@pytest.fixture
def client(tiny_app_url):
    """A fresh client per test: a fresh session, so per-session state never leaks between tests."""
    return Client(tiny_app_url, verbose=False)


def _value(x):
    """A component update (e.g. the slider's new range and value) arrives as a dict; its value is what counts."""
    return x["value"] if isinstance(x, dict) and x.get("__type__") == "update" else x


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _scene(tmp_path, size=64):
    path = tmp_path / "scene.png"
    shapes_sample(0, 0).image.resize((size, size)).save(path)
    return handle_file(str(path))


def test_every_public_event_has_a_name(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    expected = {
        "/generate",
        "/toggle_overlay",
        "/load_run_card",
        "/show_step",
        "/previous_step",
        "/next_step",
        "/play",
        "/step_once",
        "/branch",
        "/export_gif",
        "/export_filmstrip",
        "/tokenize",
        "/clear_selection",
        "/select_cells",
        "/set_code",
        "/repaint",
        "/codebook",
        "/code_details",
    }
    assert expected <= named


# ---------------------------------------------------------------- Generate
def test_generate_returns_image_tokens_and_downloads(client):
    image, tokens, info, seed, files = client.predict(*GENERATE, api_name="/generate")
    assert "4 steps of ddim" in info and f"codebook snap {DEFAULT_CODEBOOK_SNAP:g}" in info and "seed 7" in info
    assert seed == 7
    assert _pixels(image).shape[0] >= 256  # shown enlarged
    assert sorted(os.path.basename(f) for f in files) == ["image.png", "run_card.json", "tokens.json"]
    card = json.loads(open(next(f for f in files if f.endswith("run_card.json"))).read())
    assert card["prompt"] == "a red circle" and card["seed"] == 7 and card["scheduler"] == "ddim"
    assert card["steps"] == 4 and card["guidance_scale"] == 2.0 and card["model"] == "tiny-test"
    assert card["codebook_snap"] == DEFAULT_CODEBOOK_SNAP and card["num_candidates"] == 1
    assert card["first_block_cache"] == 0.0 and "first-block cache" not in info  # the tiny model's own: off
    x_t, x0, x0_tokens, changed, plot, step_info = client.predict(4, api_name="/show_step")  # from 1, as shown
    assert "Step 4 of 4" in step_info
    assert all(os.path.exists(p) for p in (tokens, x_t, x0, x0_tokens, changed, plot))


def test_a_generation_streams_a_live_preview_before_its_image(client):
    job = client.submit(*GENERATE, api_name="/generate")
    final = job.result()
    previews = job.outputs()[:-1]
    assert (
        previews
        and previews[0][2].startswith("step 1 of 4 ... (shown: the model's guess")
        and _pixels(previews[0][0]).shape[0] >= 256
    )
    assert "4 steps of ddim" in final[2]


def test_same_seed_same_image_and_random_seed_is_reported(client):
    a = client.predict(*GENERATE, api_name="/generate")
    b = client.predict(*GENERATE, api_name="/generate")
    assert (_pixels(a[0]) == _pixels(b[0])).all()
    c = client.predict("a red circle", 2, 2.0, 7, True, "dpm++", 0.5, 1, False, api_name="/generate")
    d = client.predict("a red circle", 2, 2.0, 7, True, "dpm++", 0.5, 1, False, api_name="/generate")
    assert f"seed {int(c[3])}" in c[2] and f"seed {int(d[3])}" in d[2]
    assert len({7, int(c[3]), int(d[3])}) == 3  # the box's 7 not used: a seed drawn afresh for each run


def test_the_app_samples_with_the_models_own_first_block_cache():
    """No control: a Generate run takes the model's threshold (e.g. 0.1), and its run card records it."""
    from types import SimpleNamespace

    from mmgen.app.limits import Limits
    from mmgen.app.runs import settings_from_controls
    from mmgen.settings import model_sampling_defaults

    facts = SimpleNamespace(sampling=model_sampling_defaults({"first_block_cache": 0.2}))
    ctx = SimpleNamespace(facts=facts, limits=Limits())
    settings = settings_from_controls(ctx, "a red circle", 4, 2.0, 7, False, "ddim", 0.5, 1)
    assert settings.first_block_cache == 0.2 and settings.pipeline_kwargs()["first_block_cache"] == 0.2


def test_run_card_reproduces_the_run(client, tmp_path):
    first = client.predict("a blue star", 3, 3.0, 11, False, "euler-ancestral", 0.25, 3, False, api_name="/generate")
    assert "best of 3 noises" in first[2]
    card = next(f for f in first[4] if f.endswith("run_card.json"))
    assert json.loads(open(card).read())["guidance_interval"] == list(DEFAULT_GUIDANCE_INTERVAL)  # what it ran with
    client.predict("something else", 5, 1.0, 0, False, "ddim", 1.0, 1, False, api_name="/generate")
    settings = client.predict(handle_file(card), api_name="/load_run_card")
    assert tuple(settings) == ("a blue star", 3, 3.0, 11, False, "euler-ancestral", 0.25, 3)
    again = client.predict(*settings, False, api_name="/generate")
    assert (_pixels(again[0]) == _pixels(first[0])).all()


def test_codebook_snap_changes_the_run_and_old_cards_load_without_it(client, tmp_path):
    """The snap slider reaches the sampler (snap 0 and 1 give other images from one seed), and a run card written
    before the snap existed loads with the snap off, the way it was made."""
    off = client.predict("a blue star", 4, 3.0, 11, False, "ddim", 0.0, 1, False, api_name="/generate")
    full = client.predict("a blue star", 4, 3.0, 11, False, "ddim", 1.0, 1, False, api_name="/generate")
    assert "codebook snap 0," in off[2] and "codebook snap 1," in full[2]
    assert not (_pixels(off[0]) == _pixels(full[0])).all()
    card = json.loads(open(next(f for f in off[4] if f.endswith("run_card.json"))).read())
    assert card["codebook_snap"] == 0.0
    del card["codebook_snap"], card["num_candidates"]
    (tmp_path / "old.json").write_text(json.dumps(card))
    assert client.predict(handle_file(str(tmp_path / "old.json")), api_name="/load_run_card")[-2:] == (0.0, 1)
    card["codebook_snap"] = "lots"
    (tmp_path / "bad.json").write_text(json.dumps(card))
    with pytest.raises(Exception, match="codebook_snap"):
        client.predict(handle_file(str(tmp_path / "bad.json")), api_name="/load_run_card")
    card["codebook_snap"], card["guidance_interval"] = 0.0, 250
    (tmp_path / "bad.json").write_text(json.dumps(card))
    with pytest.raises(Exception, match="guidance_interval"):
        client.predict(handle_file(str(tmp_path / "bad.json")), api_name="/load_run_card")


def test_bad_run_card_gets_a_message(client, tmp_path):
    bad = tmp_path / "card.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(Exception, match="Not an mmgen run card"):
        client.predict(handle_file(str(bad)), api_name="/load_run_card")
    bad.write_text("{not json")
    with pytest.raises(Exception, match="Not a run card"):
        client.predict(handle_file(str(bad)), api_name="/load_run_card")


def test_overlay_toggle_draws_on_the_image(client):
    client.predict(*GENERATE, api_name="/generate")
    plain = _pixels(client.predict(False, api_name="/toggle_overlay"))
    over = _pixels(client.predict(True, api_name="/toggle_overlay"))
    assert plain.shape != over.shape or not (plain == over).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (("   ", 4, 2.0, 0, False, "ddim", 0.5, 1, False), "prompt: Type a prompt"),
        (("a red circle", 4, 2.0, 0, False, "nope", 0.5, 1, False), "scheduler: Unknown scheduler 'nope'"),
        (("a red circle", 4, -1.0, 0, False, "ddim", 0.5, 1, False), r"guidance: Guidance must be a number 0\.\.10"),
        (("a red circle", 4, 11.0, 0, False, "ddim", 0.5, 1, False), r"guidance: Guidance must be a number 0\.\.10"),
        (("a red circle", 4, 2.0, 0, False, "ddim", 1.5, 1, False), r"snap: Codebook snap must be a number 0\.\.1"),
        (("a red circle", 4, 2.0, 0, False, "ddim", 0.5, 0, False), r"candidates: Candidates must be a whole number"),
        (("a red circle", 4, 2.0, -3, False, "ddim", 0.5, 1, False), r"seed: The seed must be a whole number"),
        (("a red circle", 4.5, 2.0, 0, False, "ddim", 0.5, 1, False), r"steps: Steps must be a whole number"),
        (("a red circle", "many", 2.0, 0, False, "ddim", 0.5, 1, False), r"steps: Steps must be a whole number"),
        (("x" * 2001, 4, 2.0, 0, False, "ddim", 0.5, 1, False), "prompt: The prompt has 2001 characters"),
        # over the Space's budget (the sliders' ends): the message names the limit
        (("a red circle", 150, 2.0, 0, False, "ddim", 0.5, 1, False), "150 steps is over this Space's limit of 100"),
        (("a red circle", 4, 2.0, 0, False, "ddim", 0.5, 9, False), "MMGEN_MAX_CANDIDATES"),
        # a count the model's schedule starts far from pure noise at ("linspace": 1 step at t = 0)
        (("a red circle", 1, 2.0, 0, False, "euler", 0.5, 1, False), r"steps: 1 step of .* starts at timestep 0"),
    ],
)
def test_generate_bad_input_gets_a_message_before_it_is_queued(client, args, message):
    """Every entry point's one check, run when the job asks to join the queue; the message names the control."""
    with pytest.raises(ValidationError, match=message):
        client.predict(*args, api_name="/generate")


def test_an_input_the_check_cannot_read_is_refused_and_frees_the_visitor(client):
    """A list sent for the scheduler used to crash the check, be admitted, fail in the handler before its job
    began, and leave the visitor's slot taken: every later run refused as busy for about 17 minutes."""
    with pytest.raises(ValidationError, match="could not be read"):
        client.predict("a red circle", 4, 2.0, 0, False, ["ddim"], 0.5, 1, False, api_name="/generate")
    assert client.predict(*GENERATE, api_name="/generate")[2]  # admitted: the info line of a finished run


# ---------------------------------------------------------------- Trajectory
def test_scrub_step_through_and_play(client):
    client.predict(*GENERATE, api_name="/generate")
    x_t, x0, x0_tokens, changed, plot, info = client.predict(1, api_name="/show_step")  # steps count from 1
    assert "Step 1 of 4" in info and "the first guess: 64 tokens" in info  # no step before it to change from
    assert "of 64 tokens changed since the previous step" in client.predict(2, api_name="/show_step")[-1]
    assert client.predict(1, api_name="/previous_step") == 1
    assert client.predict(3, api_name="/next_step") == 4
    assert client.predict(4, api_name="/next_step") == 4
    k, *views = client.predict(api_name="/play")
    assert k == 4 and "Step 4 of 4" in views[-1]
    with pytest.raises(Exception, match=r"whole number in 1\.\.4, got 0"):
        client.predict(0, "", 2.0, 0, api_name="/branch")


def test_step_mode_lands_on_the_full_run(client):
    client.predict(*GENERATE, api_name="/generate")
    full_x0 = client.predict(4, api_name="/show_step")[1]
    for k in range(4):
        step, x_t, x0, tokens, changed, plot, info, word_map, strip, word_info = client.predict(
            *GENERATE[:8], api_name="/step_once"
        )
        assert f"step {k + 1} of 4" in info
        if k < 3:  # the word maps stay the last finished run's, as the slider does (they were cleared, and the
            # slider, still the finished run's, brought its map back beside an empty strip)
            assert word_map == strip == {"__type__": "update"}  # left as they were
            assert "the slider and the word maps stay the last finished run's until this run ends" in word_info
    assert "finished" in info and _value(step) == 4  # the slider jumps to the finished run's last step
    assert (_pixels(x0) == _pixels(full_x0)).all()  # the last step's x0 equals the full run's


def test_the_generate_tab_reads_the_image_it_shows_after_step_mode(client):
    """A step-mode run (the Trajectory tab) becomes the session's run, but not the Generate tab's: its overlay box
    and "Read it back" drew and sent the step-mode image beside the one the Generate tab still showed."""
    _, tokens, *_ = client.predict(*GENERATE, api_name="/generate")
    other = ("a blue square", *GENERATE[1:3], 8, *GENERATE[4:8])  # another prompt and seed
    for _ in range(4):
        client.predict(*other, api_name="/step_once")
    assert (_pixels(client.predict(False, api_name="/toggle_overlay")) == _pixels(tokens)).all()


def test_scrubbing_before_a_step_mode_run_ends_says_why(tiny_app_url):
    """A first visit's step-mode steps leave no finished run: Previous / Next said "Generate an image first" beside
    that run's frames."""
    fresh = Client(tiny_app_url, verbose=False)  # a new session: no finished run
    fresh.predict(*GENERATE[:8], api_name="/step_once")
    with pytest.raises(Exception, match="Step mode's run is at step 1 of 4"):
        fresh.predict(1, api_name="/next_step")


def test_branch_from_a_step(client):
    client.predict(*GENERATE, api_name="/generate")
    original, branched, info = client.predict(2, "a green square", 5.0, 3, api_name="/branch")
    assert "Branched after step 2 of 4" in info and os.path.exists(original) and os.path.exists(branched)
    with pytest.raises(Exception, match="last one"):
        client.predict(4, "", 2.0, 0, api_name="/branch")
    # no prompt, the run's guidance and no seed (it used to be refused): the run's own settings all through, and
    # DDIM adds no noise, so the branch is the run's own image
    original, same, info = client.predict(2, "", GENERATE[2], None, api_name="/branch")
    assert "the run's own noise" in info and np.array_equal(_pixels(same), _pixels(original))


def test_an_unchanged_branch_of_an_ancestral_run_is_the_run(client):
    """Euler ancestral draws noise at every step: a branch drew it afresh from the seed, so a branch with nothing
    changed was another image. It continues the run's own noise now; a seed typed draws new noise."""
    settings = (GENERATE[0], 8, *GENERATE[2:5], "euler-ancestral", *GENERATE[6:])
    client.predict(*settings, api_name="/generate")
    original, same, info = client.predict(1, "", GENERATE[2], None, api_name="/branch")
    assert "the run's own noise to come" in info and np.array_equal(_pixels(same), _pixels(original))
    original, other, info = client.predict(1, "", GENERATE[2], 12345, api_name="/branch")
    assert "new noise from seed 12345" in info and not np.array_equal(_pixels(other), _pixels(original))
    client.predict(GENERATE[0], 8, *GENERATE[2:5], "dpm++", *GENERATE[6:], api_name="/generate")
    *_, info = client.predict(1, "", GENERATE[2], None, api_name="/branch")  # a multistep solver: said so
    assert "starts its history again here, so the branch is near the run" in info


def test_exports(client):
    client.predict(*GENERATE, api_name="/generate")
    gif = client.predict(api_name="/export_gif")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4
        # x_t beside x0 (32 px each, 2 px apart and around), enlarged 4x over its step's line: the noise is shown
        assert im.size == (4 * (2 + 2 * (32 + 2)), 4 * (32 + 4) + 40)
        first = np.asarray(im.convert("RGB"), dtype=float)
        x_t, x0 = first[8 : 8 + 128, 8 : 8 + 128], first[8 : 8 + 128, 8 + 136 : 8 + 264]
        assert x_t.std() > 0 and np.abs(x_t - x0).mean() > 10  # two different pictures, the noisy one first
    strip = Image.open(client.predict(api_name="/export_filmstrip"))
    assert strip.size == (2 + 4 * (64 + 2), 2 + 64 + 20 + 2)  # 4 frames side by side, 2x, each over its line
    line = np.asarray(strip.convert("L"))[2 + 64 :, 2 : 2 + 64]
    assert (line < 128).any() and (np.asarray(strip.convert("L"))[2 + 64 :, 2 + 66 : 2 + 130] < 128).any()


def test_trajectory_before_any_run_asks_for_one(client):
    for api, args in (("/show_step", (1,)), ("/play", ()), ("/export_gif", ()), ("/branch", (1, "", 2.0, 0))):
        with pytest.raises(Exception, match="Generate an image first"):
            client.predict(*args, api_name=api)


# ---------------------------------------------------------------- Tokenizer
def test_tokenize_endpoint(client, tmp_path):
    original, recon, stats, tmap, usage, edited, info = client.predict(_scene(tmp_path), api_name="/tokenize")
    assert "PSNR" in stats and "SSIM" in stats and "16×16 tokens" in stats
    assert all(os.path.exists(p) for p in (original, recon, tmap, usage)) and edited is None


def test_tokenize_rejects_a_non_image_with_a_message(client, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(Exception, match="not an image|cannot identify"):
        client.predict(handle_file(str(path)), api_name="/tokenize")


def test_image_inputs_read_only_uploads_not_other_server_files(client, tmp_path):
    """The image inputs are handed over unprocessed: a client that names a file of the server (a bare FileData
    without gradio's `meta`, or a path) must not get it read back, nor learn whether it exists."""
    secret = tmp_path / "secret.png"
    shapes_sample(0, 0).image.save(secret)
    for value in ({"path": str(secret)}, {"path": str(tmp_path / "missing.png")}):
        for api in ("/tokenize", "/caption"):  # /compare_tokenizers: tests/test_app_tokenizers.py
            with pytest.raises(Exception, match="reads only files uploaded to it"):
                client.predict(value, api_name=api)
    import gradio as gr

    from mmgen.app.files import uploaded_file

    with pytest.raises(gr.Error, match="reads only files uploaded to it"):  # a bare path, past gradio's validation
        uploaded_file(str(secret))
    assert uploaded_file(None) is None


def test_token_surgery_sets_codes_and_decodes(client, tmp_path):
    usage_as_encoded = client.predict(_scene(tmp_path), api_name="/tokenize")[4]
    with pytest.raises(Exception, match="Select cells first"):
        client.predict(5, api_name="/set_code")
    tmap, info, *_ = client.predict("0,0; 0,1; 5,5", api_name="/select_cells")
    assert "3 cell(s) selected" in info
    edited, tmap, info, usage = client.predict(5, api_name="/set_code")
    assert "Set 3 cell(s) to code 5" in info and "counts the edited grid" in info and os.path.exists(edited)
    # the chart counts the grid as edited: code 5 in three more cells (the scene's corners are background)
    assert not np.array_equal(np.asarray(Image.open(usage)), np.asarray(Image.open(usage_as_encoded)))
    assert np.array_equal(
        np.asarray(Image.open(client.predict(5, api_name="/set_code")[3])), np.asarray(Image.open(usage))
    )
    for bad in (2.5, -1, 64):
        with pytest.raises(Exception, match="whole number between 0 and 63"):
            client.predict(bad, api_name="/set_code")
    with pytest.raises(Exception, match="inside the grid .16 rows, 16 columns."):
        client.predict("99,0", api_name="/select_cells")
    _, info = client.predict(api_name="/clear_selection")
    assert "cleared" in info


def test_repaint_keeps_unselected_cells(client, tmp_path):
    client.predict(_scene(tmp_path, size=32), api_name="/tokenize")  # 8x8 tokens: the tiny generator's grid
    client.predict("2,2; 2,3; 3,2; 3,3", api_name="/select_cells")
    edited, tmap, info, usage = client.predict("a red circle", 0, api_name="/repaint")
    assert "Repainted 4 selected cell(s)" in info and os.path.exists(edited) and os.path.exists(usage)


def test_repaint_needs_the_generators_grid(client, tmp_path):
    client.predict(_scene(tmp_path, size=64), api_name="/tokenize")  # 16x16 tokens; the tiny generator does 8x8
    client.predict("1,1", api_name="/select_cells")
    with pytest.raises(Exception, match="repaints 8×8-token grids .32×32 images.; this image makes 16×16 tokens"):
        client.predict("a red circle", 0, api_name="/repaint")
    client.predict(_scene(tmp_path, size=32), api_name="/tokenize")  # refused before the job: the slot is free
    client.predict("1,1", api_name="/select_cells")
    assert "Repainted 1 selected cell(s)" in client.predict("a red circle", 0, api_name="/repaint")[2]


# ---------------------------------------------------------------- Codebook
def test_codebook_and_code_details(client):
    grid, usage, info = client.predict("usage (most used first)", api_name="/codebook")
    assert "Reference set" in info and "perplexity" in info and os.path.exists(grid)
    big, code_info, neighbours, examples, grid2, code = client.predict(3, "code id", api_name="/code_details")
    assert "**Code 3**" in code_info and code == 3 and len(neighbours) == 8
    with pytest.raises(Exception, match="whole number between 0 and 63"):
        client.predict(10_000, "code id", api_name="/code_details")
    for bad in ("NaN", "-Infinity"):  # over plain HTTP (gradio_client sends JSON only): gradio's check said nothing
        assert "whole number between 0 and 63" in _called(client, "code_details", f'[{bad}, "code id", null, null]')


def _called(client: Client, api: str, data: str) -> str:
    """What an event streams back when called over plain HTTP with `data`, a JSON list as text."""
    url = f"{client.src.rstrip('/')}/gradio_api/call/{api}"
    started = httpx.post(url, content=f'{{"data": {data}}}', headers={"content-type": "application/json"}, timeout=30)
    with httpx.stream("GET", f"{url}/{started.json()['event_id']}", timeout=60) as events:
        return " ".join(events.iter_lines())


# ---------------------------------------------------------------- gradio's image cache
def test_a_repeated_image_never_rewrites_the_cached_file_a_browser_may_be_reading(tiny_app_url, tmp_path):
    import gradio as gr

    from mmgen.app import files

    assert gr.processing_utils.save_pil_to_cache is files.save_pil_to_cache_atomically  # what gr.Image calls
    image = shapes_sample(0, 1).image
    path = gr.processing_utils.save_pil_to_cache(image, str(tmp_path), format="png")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(image))
    # Stand-in for a download in flight: gradio's own version truncates and rewrites this file in place.
    with open(path, "ab") as f:
        f.write(b"in flight")
    size = os.path.getsize(path)
    assert gr.processing_utils.save_pil_to_cache(image, str(tmp_path), format="png") == path
    assert os.path.getsize(path) == size
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no staging file left behind


def test_scratch_folders_for_downloads_are_pruned_once_old(tmp_path, monkeypatch):
    """Downloads and exports are written to scratch folders that gradio copies from; a long-running Space must
    not keep every one of them."""
    from mmgen.app import files

    monkeypatch.setattr(files, "SCRATCH_ROOT", tmp_path / "scratch")
    old, recent = files.scratch_folder("run-"), files.scratch_folder("run-")
    (old / "image.png").write_bytes(b"x")
    stale = time.time() - files.SCRATCH_MAX_AGE_S - 60
    os.utime(old, (stale, stale))
    monkeypatch.setattr(files, "_swept_at", time.time() - 1)  # swept a second ago: not yet again
    assert files.scratch_folder("run-") and old.exists()
    monkeypatch.setattr(files, "_swept_at", time.time() - files.SWEEP_EVERY_S)
    new = files.scratch_folder("trajectory-")
    assert not old.exists() and recent.exists() and new.exists() and new.parent == tmp_path / "scratch"
    assert files.CACHE_CLEANUP[1] >= files.SCRATCH_MAX_AGE_S  # gradio's cached copies outlive the scratch files


# ---------------------------------------------------------------- one check, messages for people
def test_run_cards_go_through_the_same_check(client, tmp_path):
    first = client.predict(*GENERATE, api_name="/generate")
    card = json.loads(open(next(f for f in first[4] if f.endswith("run_card.json"))).read())
    for field, value, message in [
        ("guidance_scale", float("nan"), "Guidance must be a number >= 0, got nan"),
        ("guidance_scale", float("inf"), "Guidance must be a number >= 0, got inf"),
        ("steps", 150, "150 steps is over this Space's limit of 100 \\(MMGEN_MAX_STEPS\\)"),
        ("num_candidates", 12, "12 candidates is over this Space's limit of 8"),
        ("prompt", "x" * 2001, "The prompt has 2001 characters"),
    ]:
        (tmp_path / "card.json").write_text(json.dumps({**card, field: value}))  # json writes NaN, as JS cannot
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(tmp_path / "card.json")), api_name="/load_run_card")


def test_failures_never_show_paths_or_exception_names(client, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception) as refused:
        client.predict(handle_file(str(bad)), api_name="/tokenize")
    message = str(refused.value)
    assert "not an image" in message and "/tmp" not in message and "gradio" not in message
    assert not any(name in message for name in ("UnidentifiedImageError", "OSError", "ValueError", "Traceback"))
    client.predict(_scene(tmp_path), api_name="/tokenize")
    with pytest.raises(Exception, match="type at most"):  # a huge cell list is refused before it is parsed
        client.predict("1,1; " * 10_000, api_name="/select_cells")


def test_the_handler_wrapper_turns_any_failure_into_a_message(caplog):
    import gradio as gr

    from mmgen.app.errors import UNEXPECTED, for_people, handler

    @handler
    def broken(kind):
        if kind == "value":
            raise ValueError("/srv/app/cache/abc123/photo.png: not an image")
        raise KeyError("internal detail")

    with pytest.raises(gr.Error) as e:
        broken("value")
    assert e.value.message == "'photo.png': not an image"
    assert not e.value.print_exception  # a message for people leaves no traceback in the server's log
    with pytest.raises(gr.Error) as e:
        broken("other")
    assert e.value.message == UNEXPECTED and "internal detail" in caplog.text  # logged for the host, not shown
    assert for_people(r"could not read C:\Users\me\card.json") == "could not read 'card.json'"
    assert for_people("../../etc: outside the app's folder") == "../../etc: outside the app's folder"  # as typed


# ---------------------------------------------------------------- limits, jobs, frames (no server)
def test_limits_come_from_the_environment_and_bad_values_stop_the_start():
    from mmgen.app import Limits

    limits = Limits.from_env({"MMGEN_MAX_STEPS": "50", "MMGEN_MAX_JOB_SECONDS": "2.5", "MMGEN_QUEUE_SIZE": " "})
    assert (limits.max_steps, limits.job_seconds, limits.queue_size) == (50, 2.5, Limits().queue_size)
    for env, message in [
        ({"MMGEN_MAX_STEPS": "5000"}, "at most 1000"),
        ({"MMGEN_MAX_CANDIDATES": "lots"}, "must be a number"),
        ({"MMGEN_SESSION_MINUTES": "0"}, "above 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            Limits.from_env(env)
    from mmgen.app.compute import default_threads

    assert default_threads({"MMGEN_TORCH_THREADS": "3"}) == 3 and default_threads({}) >= 1
    with pytest.raises(ValueError, match="at least 1"):
        default_threads({"MMGEN_TORCH_THREADS": "0"})


def test_only_the_model_thread_runs_torch_on_several_threads():
    """torch.set_num_threads on the model thread also sets the count every later thread adopts; each such thread
    would start an OpenMP team of its own, and libgomp then lets the model team's worker sleep at every op."""
    import threading

    import torch

    from mmgen.app.compute import ModelThread

    main_before = torch.get_num_threads()
    compute = ModelThread(threads=3)
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))  # a gradio worker, a loader
    later.start()
    later.join()
    assert compute(torch.get_num_threads) == 3 and seen == [1]
    assert torch.get_num_threads() == main_before  # the thread that built it keeps its own count


def test_app_py_gives_every_thread_one_openmp_thread_before_torch_loads():
    """Run as a script, app.py sets OMP_NUM_THREADS=1 before anything imports torch (MMGEN_TORCH_THREADS sets the
    model thread's count)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / "app.py").read_text())
    first_import = next(  # the first import of anything but os and __future__: mmgen and torch come after it
        i
        for i, n in enumerate(tree.body)
        if isinstance(n, ast.Import | ast.ImportFrom)
        and not (isinstance(n, ast.Import) and [a.name for a in n.names] == ["os"])
        and getattr(n, "module", None) != "__future__"
    )
    sets = [
        i
        for i, n in enumerate(tree.body)
        if isinstance(n, ast.If)
        and "__main__" in ast.unparse(n.test)
        and "os.environ['OMP_NUM_THREADS'] = '1'" in ast.unparse(n)
    ]
    assert sets and sets[0] < first_import


def test_the_queue_does_not_poll_every_millisecond():
    import gradio as gr

    from mmgen.app.serving import PROGRESS_POLL_S, QUEUE_POLL_S, quiet_queue

    with gr.Blocks() as demo:
        gr.Textbox()
    demo.queue()
    assert demo._queue.sleep_when_free < QUEUE_POLL_S  # gradio's own: 1 ms; it still has the attribute
    quiet_queue(demo)
    assert (demo._queue.sleep_when_free, demo._queue.progress_update_sleep_when_free) == (
        QUEUE_POLL_S,
        PROGRESS_POLL_S,
    )


def test_job_gate_admits_one_job_per_session():
    from types import SimpleNamespace

    from mmgen.app import Limits
    from mmgen.app.jobs import BUSY, JobGate

    gate = JobGate(Limits())
    gate.admit("a")
    with pytest.raises(ValueError, match="already have a job"):
        gate.admit("a")
    assert BUSY.endswith("(one at a time per visitor).")
    gate.admit("b")  # another visitor
    with gate.job(SimpleNamespace(session_hash="a")):
        with pytest.raises(ValueError, match="already have a job"):
            gate.admit("a")
    gate.admit("a")  # the job ended: its slot is free
    gate.on_unload(SimpleNamespace(session_hash="a"))  # the tab closed before its job ran
    gate.admit("a")
    gate.stale_after_s = 0  # a job that never started (its client left) gives its slot back
    gate.admit("a")


def test_a_running_job_that_stops_checking_in_gives_its_slot_back(monkeypatch):
    """gradio leaves a cancelled handler's generator suspended, so its `finally` never frees the slot: a job that
    checks its deadline and then stops for QUIET_S (a minute) was cancelled."""
    from types import SimpleNamespace

    from mmgen.app import Limits, jobs

    now = [1000.0]
    monkeypatch.setattr(jobs, "time", SimpleNamespace(monotonic=lambda: now[0]))  # this module's clock alone
    gate = jobs.JobGate(Limits())
    cancelled = gate.job(SimpleNamespace(session_hash="a"))
    deadline = cancelled.__enter__()  # never exited, as a suspended generator's `with`
    deadline.check()
    now[0] += jobs.QUIET_S - 1
    with pytest.raises(ValueError, match="already have a job"):
        gate.admit("a")
    deadline.check()  # still running: it checked in
    now[0] += jobs.QUIET_S + 1
    gate.admit("a")  # quiet for over a minute: its slot is free
    now[0] += 1
    with pytest.raises(ValueError, match="already have a job"):
        gate.admit("a")  # the new job holds it, queued (no beat yet)
    # The old job was not cancelled after all: it wakes, checks in (past its time limit) and ends. Neither its check
    # nor its end may touch the new job's slot, or the visitor could queue a third job beside it.
    with pytest.raises(jobs.JobTimeLimit):
        deadline.check()
    cancelled.__exit__(None, None, None)
    with pytest.raises(ValueError, match="already have a job"):
        gate.admit("a")
    with gate.job(SimpleNamespace(session_hash="a")):
        pass  # the new job runs and ends: the slot is free
    gate.admit("a")


def test_a_refusal_of_no_one_input_appears_under_the_first_one_a_visitor_sees():
    """Repaint's and branch's first input is a gr.State, which shows nothing: a busy visitor, or inputs the check
    could not read, are told under the input the event names instead."""
    from types import SimpleNamespace

    from mmgen.app import Limits
    from mmgen.app.jobs import BUSY, UNREADABLE, JobGate

    gate, request = JobGate(Limits()), SimpleNamespace(session_hash="a")

    def shown(verdicts):  # the (index, message) of the one refused input
        return [(i, v["message"]) for i, v in enumerate(verdicts) if not v["is_valid"]]

    assert shown(gate.admission(lambda *values: 1 / 0, message_at=1)(request, None, "p", 0)) == [(1, UNREADABLE)]
    gate.admit("a")
    assert shown(gate.admission(None, message_at=1)(request, None, "p", 0)) == [(1, BUSY)]
    assert shown(gate.admission(lambda *values: (2, "bad seed"))(request, None, "p", 0)) == [(2, "bad seed")]


def test_a_finished_run_is_small_and_frames_are_drawn_on_demand(tiny_pipe):
    """A session keeps tokens, latents and the sampler's noise state (kB per step), never drawn frames; the cache
    of decoded frames is bounded for the whole app."""
    import torch

    from mmgen.app.compute import ModelThread
    from mmgen.app.frames import FrameDrawer, Trajectory

    noise = torch.Generator().manual_seed(0)
    run = tiny_pipe.stepwise("a red circle", num_inference_steps=6, num_candidates=1, generator=noise)
    trajectory = Trajectory()
    while not run.done:
        trajectory.record(run.pipe, run.step(), run.model_input, noise)
    kept = trajectory.latents + trajectory.tokens + trajectory.inputs + [s for s, _ in trajectory.noise_states]
    per_step = sum(t.nbytes for t in kept) / len(trajectory)
    c, h, w = trajectory.latents[0].shape
    # float32 latents (a branch starts from them exactly), the float16 DiT input, int16 tokens, the noise
    # generator's state (CPU: 5,056 bytes), nothing else
    assert per_step == c * h * w * 4 + c * h * w * 2 + h * w * 2 + 5056
    drawer = FrameDrawer(tiny_pipe, ModelThread(), display_side=64, cache_size=4)
    x_t, x0, tokens, changed, plot, info = drawer.view(trajectory, 5)
    assert x0.size == (64, 64) and "Step 6 of 6" in info
    for k in range(6):
        drawer.view(trajectory, k)
    assert drawer.cached() == 4
    assert [im.size for im in drawer.all_x0(trajectory)] == [(32, 32)] * 6


def test_a_model_with_a_sampler_the_list_lacks_samples_with_it_not_another():
    """A model folder may come with a scheduler mmgen reads but has no short name for (Heun): the dropdown is left
    empty, a run without a choice takes the model's own, and the info line names it (it showed and ran dpm++)."""
    from conftest import launched, make_tiny_pipe
    from diffusers import HeunDiscreteScheduler

    import app

    pipe = make_tiny_pipe()
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    with launched(app.build_demo(pipe, model_name="heun-test")) as url:
        client = Client(url, verbose=False)
        config = client.config["components"]
        dropdown = next(c for c in config if c.get("props", {}).get("elem_id") == "scheduler")["props"]
        assert dropdown.get("value") is None and "HeunDiscreteScheduler" in dropdown["info"]
        out = client.predict("a red circle", 2, 2.0, 0, False, None, 0.5, 1, False, api_name="/generate")
        assert "of HeunDiscreteScheduler" in out[2]
        assert (
            json.loads(Path(_value(out[4][2])).read_text())["scheduler_config"]["_class_name"]
            == "HeunDiscreteScheduler"
        )
        # a branch starts the sampler at a later step, which Heun's two model calls a step cannot: said, not a
        # branch from the middle of a step (different tokens for the same noise)
        with pytest.raises(Exception, match="calls the model 2 times a step: starting from a later step needs"):
            client.predict(1, "", 2.0, None, api_name="/branch")
