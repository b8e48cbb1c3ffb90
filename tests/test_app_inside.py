"""The app's inside views, through gradio_client on a tiny pipeline: each word's attention on the Trajectory tab,
the Image → text tab (ranked captions, the model's own caption, bad input), and the words the model never saw."""

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

from mmgen.data.shapes import shapes_sample  # noqa: E402
from mmgen.vocabulary import Vocabulary  # noqa: E402

FAST = ("a large red circle", 4, 2.0, 0, False, "ddim", 0.5, 1, False)  # /generate's inputs
CAPTIONS = ["a red circle", "a blue star", "a green square"]


@pytest.fixture(scope="module")
def app_url():
    from conftest import launched, make_tiny_pipe

    import app

    demo = app.build_demo(make_tiny_pipe(), model_name="tiny-test")
    ctx = demo.mmgen_context
    ctx.__dict__["vocabulary"] = Vocabulary.from_captions(["a large red circle", "a small blue square"])
    with launched(demo) as url:
        yield url


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scene.png"
    shapes_sample(0, 0).image.resize((32, 32)).save(path)  # the tiny pipeline paints 32x32
    return handle_file(str(path))


def test_each_word_has_an_attention_map_at_every_step(client):
    client.predict(*FAST, api_name="/generate")
    image, strip, info = client.predict(1, "circle", api_name="/word_attention")  # steps count from 1
    assert "'circle' at step 1 of 4" in info and "peak around pixel" in info
    assert "'red' at step 3 of 4" in client.predict(3, "red", api_name="/word_attention")[-1]
    assert Image.open(image).width >= 256 and Image.open(strip).width > Image.open(strip).height  # a row of steps
    with pytest.raises(Exception, match="Pick one of the prompt's words: a, large, red, circle"):
        client.predict(1, "square", api_name="/word_attention")


def test_the_replayed_attention_is_the_runs_own(tmp_path):
    """Each word's attention, found after the run from the DiT's recorded inputs, is what `AttentionRecorder`
    sees at each step of the same run (guidance on: the conditional rows of each step's batch)."""
    import torch
    from conftest import make_tiny_pipe

    from mmgen.app.frames import Trajectory
    from mmgen.attention import AttentionRecorder

    pipe = make_tiny_pipe()
    kwargs = dict(num_inference_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    run, trajectory = pipe.stepwise("a large red circle", **kwargs), Trajectory("a large red circle")
    with AttentionRecorder(pipe, "a large red circle") as whole:
        while not run.done:
            trajectory.record(pipe, run.step(), run.model_input)
    assert trajectory.attention == {} and len(trajectory.inputs) == 3
    trajectory.replay_attention(pipe, [2, 0])  # only the steps asked for
    assert trajectory.words == ["a", "large", "red", "circle"] and sorted(trajectory.attention) == [0, 2]
    trajectory.replay_attention(pipe, [0, 1, 2, 7])  # the missing one, and no step past the run's end
    assert sorted(trajectory.attention) == [0, 1, 2]
    for k in range(3):
        expected = torch.stack(list(whole.word_grids(step=k).values()))
        assert torch.allclose(trajectory.attention[k].float(), expected, atol=2e-3)
    assert trajectory.attention[0].dtype == torch.float16 and trajectory.attention[0].shape[0] == 4
    # a wrong step's input gives another map: the check can fail
    trajectory.attention, trajectory.inputs[0] = {}, torch.randn_like(trajectory.inputs[0]) * 3
    trajectory.replay_attention(pipe, [0])
    first = torch.stack(list(whole.word_grids(step=0).values()))
    assert not torch.allclose(trajectory.attention[0].float(), first, atol=2e-3)


def test_rank_captions_and_the_models_own_caption(client, scene):
    shown, chart, info = client.predict(scene, "\n".join(CAPTIONS + ["", "a red circle"]), api_name="/rank_captions")
    assert "Ranked 3 caption(s)" in info and any(f"**{c}**" in info for c in CAPTIONS)
    assert "below the runner-up, *" in info  # named in full: the chart cuts a long one
    assert Image.open(chart).height > 3 * 10  # one bar per caption
    shown, chart, info = client.predict(scene, api_name="/caption")
    assert "The model's caption: **a" in info  # ranked from the vocabulary's captions (no grammar)


def test_reading_an_image_back_puts_its_prompt_first_until_the_box_is_full():
    """Each 'Read it back as text' added its prompt above the captions there: 17 read-backs made a box that
    'Rank' refused (at most 16 captions)."""
    from types import SimpleNamespace

    from mmgen.app.caption import MAX_CAPTIONS, CaptionTab
    from mmgen.app.jobs import JobGate
    from mmgen.app.limits import Limits

    gate = JobGate(Limits())
    tab = SimpleNamespace(ctx=SimpleNamespace(jobs=gate))

    def read_back(prompt, box, request=None):
        run = SimpleNamespace(image=None, settings=SimpleNamespace(prompt=prompt))
        return CaptionTab.receive(tab, run, box, request)[1]

    assert read_back("a red circle", "a blue star") == "a red circle\na blue star"
    assert read_back("a red circle", "a blue star\na red circle") == "a blue star\na red circle"  # there already
    box = ""
    for i in range(MAX_CAPTIONS + 3):
        box = read_back(f"prompt {i}", box)
    assert len(box.splitlines()) == MAX_CAPTIONS and box.startswith(f"prompt {MAX_CAPTIONS - 1}\n")
    # while the session's next image is being made, it sent the last one (and its prompt) unsaid
    gate.admit("visitor")
    with pytest.raises(Exception, match="still running: read the image back when it is done"):
        read_back("a red circle", "", SimpleNamespace(session_hash="visitor"))
    assert read_back("a red circle", "", SimpleNamespace(session_hash="another")) == "a red circle"


def test_caption_bad_input_gets_messages(client, scene, tmp_path):
    with pytest.raises(Exception, match="Type the captions to rank"):
        client.predict(scene, "  \n ", api_name="/rank_captions")
    with pytest.raises(Exception, match="rank at most 16 at once"):
        client.predict(scene, "\n".join(f"a red circle {i}" for i in range(17)), api_name="/rank_captions")
    with pytest.raises(Exception, match="Upload an image first"):
        client.predict(None, "a red circle", api_name="/rank_captions")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(Exception, match="can't be used") as refused:
        client.predict(handle_file(str(broken)), "a red circle", api_name="/rank_captions")
    assert str(tmp_path) not in str(refused.value)
    Image.new("RGB", (7, 7), "red").save(tmp_path / "tiny.png")  # it used to be scaled up and captioned
    with pytest.raises(Exception, match="7×7: too small to read"):
        client.predict(handle_file(str(tmp_path / "tiny.png")), api_name="/caption")
    shapes_sample(0, 1).image.resize((96, 32)).save(tmp_path / "wide.png")  # its crop is said, not silent
    *_, info = client.predict(handle_file(str(tmp_path / "wide.png")), "a red circle", api_name="/rank_captions")
    assert "The image (96×32) was cut to its middle 32×32 square." in info


def test_words_the_model_never_saw_are_flagged_without_blocking(client):
    note = client.predict("a large cat on a sofa", api_name="/check_words")
    assert note.startswith("⚠️ The model never saw: cat") and "sofa" in note and "It knows 6 words" in note
    assert " on " not in note.split("It knows")[0]  # stop words are never flagged
    assert client.predict("a large red circle", api_name="/check_words") == ""
    # symbols or stop words alone name nothing, which used to pass without a word
    for nothing in ("🔴 ⭐", "the a of on"):
        assert "names nothing the model knows" in client.predict(nothing, api_name="/check_words")
    # a prompt past the 30 word pieces the model reads: the note says what it never reads
    long = "a large red circle " * 7 + "on a small blue square"  # 28 + 5 word pieces
    assert client.predict(long, api_name="/check_words") == (
        "⚠️ It reads the first 30 word pieces of a prompt: 'small blue square' is ignored."
    )
    image, *_ = client.predict("a large cat", *FAST[1:], api_name="/generate")  # still runs
    assert image


def test_a_prompt_put_in_the_words_the_model_knows(client):
    known = {"a", "large", "red", "circle", "small", "blue", "square", "on"}  # stop words stay as they are
    assert client.predict("A large red circle!", api_name="/in_known_words") == "a large red circle"
    assert client.predict("a lagre red squre", api_name="/in_known_words") == "a large red square"  # by spelling
    rewritten = client.predict("a large cat on a sofa", api_name="/in_known_words")
    assert set(rewritten.split()) <= known  # (the tiny encoder's matches by meaning are noise: only known words)
    with pytest.raises(Exception, match="Type a prompt first"):
        client.predict("  ", api_name="/in_known_words")
    with pytest.raises(Exception, match="at most"):
        client.predict("a red circle " * 200, api_name="/in_known_words")


def test_each_x_t_frame_is_what_the_dit_read_at_its_timestep():
    """Frame k's x_t used to be the latents after step k (the next timestep's) beside step k's timestep, so the
    starting noise was never shown; and Euler's x0 + sigma noise (sigma up to 15) was drawn mostly clipped."""
    import torch
    from conftest import make_tiny_pipe

    from mmgen.app.frames import FrameDrawer, Trajectory
    from mmgen.viz import latent_rgb, principal_axes

    pipe = make_tiny_pipe().with_scheduler("euler-ancestral")
    kwargs = dict(num_inference_steps=4, guidance_scale=2.0, num_candidates=1)
    run = pipe.stepwise("a red circle", generator=torch.Generator().manual_seed(0), **kwargs)
    noise = run.latents.clone()  # the starting noise, x0 + sigma_max noise for Euler
    trajectory = Trajectory("a red circle")
    while not run.done:
        trajectory.record(pipe, run.step(), run.model_input)
    drawer = FrameDrawer(pipe, lambda f, *a: f(*a), 64)
    axes = principal_axes(pipe.vqvae.quantizer.codebook.detach())

    def drawn(latents):
        return latent_rgb(latents.float() / pipe.scaling_factor, axes, scale=1.0).tobytes()

    sigma = run.scheduler.sigmas[0]
    assert drawer.x_t(trajectory, 0).tobytes() == drawn((noise[0] / (sigma**2 + 1) ** 0.5).half())  # the start
    assert drawer.x_t(trajectory, 1).tobytes() != drawn(trajectory.latents[1])  # not the step after's


def test_the_caption_chart_draws_the_best_captions_only():
    """'Caption it' on a model without the shapes grammar ranks its 256 most common training captions: every one
    drawn made a chart 7,000 px tall."""
    from mmgen.app.caption import MAX_CAPTIONS, bar_chart

    ranked = [(f"caption {i}", 0.1 + 0.001 * i) for i in range(256)]
    assert bar_chart(ranked).height == bar_chart(ranked[:MAX_CAPTIONS]).height > bar_chart(ranked[:3]).height
