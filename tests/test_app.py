"""The app, launched locally and called through gradio_client, the way outside code uses it."""

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402

from mmgen.data.shapes import shapes_sample  # noqa: E402
from mmgen.models.vqvae import VQVAE  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import app

    root = tmp_path_factory.mktemp("m")
    from mmgen.models.vqvae import VQVAE_PRESETS

    VQVAE(**VQVAE_PRESETS["tiny"]).save_pretrained(root / "vqvae")
    vq = VQVAE.from_pretrained(root / "vqvae").eval()
    demo = app.build_demo(vq, model_name="tiny-test")
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
