"""The app, launched locally and called through gradio_client, the way outside code uses it."""

import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from conftest import make_tiny_pipe  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from mmgen.data.shapes import shapes_sample  # noqa: E402


@pytest.fixture(scope="module")
def client():
    import app

    demo = app.build_demo(make_tiny_pipe(), model_name="tiny-test")
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, show_error=True,
                        max_file_size=app.MAX_FILE_SIZE)  # fmt: skip
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_tokenize_endpoint(client, tmp_path):
    path = tmp_path / "scene.png"
    shapes_sample(0, 0).image.save(path)
    original, recon, stats, tmap, usage = client.predict(handle_file(str(path)), api_name="/tokenize")
    assert "PSNR" in stats and "16×16 tokens" in stats
    for image in (original, recon, tmap, usage):
        assert os.path.exists(image)


def test_tokenize_rejects_a_non_image_with_a_message(client, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(path)), api_name="/tokenize")
    assert "cannot identify image" in str(info.value) or "not an image" in str(info.value)


def test_build_demo_exposes_named_endpoints(client):
    assert "/tokenize" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]


def test_generate_then_scrub_the_trajectory(client):
    image, tmap, info, seed, step, *frame = client.predict(
        "a red circle", 4, 2.0, 7, False, "ddim", api_name="/generate"
    )
    assert os.path.exists(image) and os.path.exists(tmap)
    assert "4 steps of ddim" in info and "seed 7" in info and seed == 7
    x_t, x0, x0_tokens, changed, step_info = frame
    assert "Step 4 of 4" in step_info
    x_t, x0, x0_tokens, changed, step_info = client.predict(0, api_name="/show_step")  # same session: same run
    assert "Step 1 of 4" in step_info and "64 tokens changed" in step_info  # step 1: all 8x8 tokens are new
    assert all(os.path.exists(p) for p in (x_t, x0, x0_tokens, changed))


def test_generate_reproduces_a_seed_and_draws_a_random_one(client):
    from PIL import Image

    a = client.predict("a blue star", 2, 1.0, 3, False, "dpm++", api_name="/generate")
    b = client.predict("a blue star", 2, 1.0, 3, False, "dpm++", api_name="/generate")
    assert (np.asarray(Image.open(a[0])) == np.asarray(Image.open(b[0]))).all()
    c = client.predict("a blue star", 2, 1.0, 3, True, "dpm++", api_name="/generate")
    assert isinstance(c[3], int | float) and f"seed {int(c[3])}" in c[2]


@pytest.mark.parametrize(
    "args, message",
    [
        (("   ", 4, 2.0, 0, False, "ddim"), "Type a prompt"),
        (("a red circle", 4, 2.0, 0, False, "nope"), "not in the list of choices"),
    ],
)
def test_generate_bad_input_gets_a_message(client, args, message):
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name="/generate")
    assert message in str(info.value)


def test_show_step_before_any_run_asks_for_one(tmp_path):
    import app

    demo = app.build_demo(make_tiny_pipe(), model_name="tiny-test")
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, show_error=True)
    try:
        with pytest.raises(Exception) as info:
            Client(demo.local_url, verbose=False).predict(0, api_name="/show_step")
        assert "Generate an image first" in str(info.value)
    finally:
        demo.close()
