"""Files the explorer hands to gradio: scratch folders for downloads and exports, pruned once old, and a safe
replacement for gradio's image cache writer (`install_atomic_image_cache`); and the files visitors send it
(`uploaded_file`: their uploads, never another file of the server)."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal
from PIL import Image

SCRATCH_ROOT = Path(tempfile.gettempdir()) / "mmgen-app"
SCRATCH_MAX_AGE_S = 3600
SWEEP_EVERY_S = 60  # how often scratch_folder looks for old folders
_swept_at = 0.0  # when it last did
CACHE_CLEANUP = (900, 7200)  # gradio's delete_cache: every 15 min, drop files (outputs, uploads) older than 2 h


def scratch_folder(prefix: str) -> Path:
    """A new folder for files handed to gradio (downloads, exports). gradio copies each one into its own cache
    (pruned by `CACHE_CLEANUP`), so these are needed only until the event returns; folders older than
    `SCRATCH_MAX_AGE_S` are removed here, at most once every `SWEEP_EVERY_S`, so that a Space that runs for weeks
    does not fill its disk."""
    global _swept_at
    SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    if now - _swept_at >= SWEEP_EVERY_S:  # a sweep stats every folder: 3.5 ms with 800, one a generation
        _swept_at = now
        for old in SCRATCH_ROOT.iterdir():
            try:
                if now - old.stat().st_mtime > SCRATCH_MAX_AGE_S:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:  # another event removed it first
                pass
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH_ROOT))


def save_pil_to_cache_atomically(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """gradio's `save_pil_to_cache`, made safe for images that repeat: the cache path is the hash of the image's
    bytes, and gradio rewrites that file in place each time. When one event shows an image that another shows
    too (e.g. the last step's tokens and the final token map), a browser fetching the file while it is being
    rewritten gets a truncated or overlong response: a broken image and an h11 "Too much / Too little data for
    declared Content-Length" error in the log. Here an existing file is left alone and a new one is written
    under a temporary name and renamed into place, as gradio's own `save_file_to_cache` does."""
    pu = gr.processing_utils
    data = pu.encode_pil_to_bytes(img, format)
    path = (Path(cache_dir) / pu.hash_bytes(data) / f"{name}.{format}").resolve()
    if path.exists():
        os.utime(path)  # gradio's delete_cache ages files by time: a reused copy counts as new
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    return str(path)


def install_atomic_image_cache() -> None:
    """Route every image output (gr.Image, gr.Gallery) of this process through `save_pil_to_cache_atomically`."""
    gr.processing_utils.save_pil_to_cache = save_pil_to_cache_atomically


def uploaded_file(upload: dict | str | None) -> str | None:
    """The path of an image input's value as sent (inputs that gradio hands over unprocessed): a FileData dict or
    a path, which must lie in gradio's upload folder (or be one of this app's scratch files); a `data:` URL (its
    size capped with the request's) is written to a scratch file as it is. gradio checks the path of a FileData
    that says it is one, but not of a bare path or a dict without that `meta`: any other file of the server would
    be read and shown, so it is refused here."""
    if isinstance(upload, dict) and (upload.get("url") or "").startswith("data:"):
        try:
            data = base64.b64decode(upload["url"].split(",", 1)[1], validate=True)
        except (IndexError, ValueError) as e:
            raise gr.Error("That data: URL holds no image: upload the file instead.") from e
        path = scratch_folder("upload-") / "image"
        path.write_bytes(data)
        return str(path)
    path = upload.get("path") if isinstance(upload, dict) else upload
    if not isinstance(path, str) or not path:
        return None
    if not any(is_in_or_equal(path, folder) for folder in (get_upload_folder(), SCRATCH_ROOT)):
        raise gr.Error("The app reads only files uploaded to it: upload the image.")
    return path
