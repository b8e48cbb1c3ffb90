"""The pipeline, loaded on a thread of its own while the page is already served.

A cold start is mostly imports: gradio's own, then torch, diffusers and transformers, then the weights. The page
needs only gradio and a few facts about the model (codebook size, token grid, sampler), which its config files
hold, so `app.py` builds and serves the page first and loads the pipeline meanwhile; the first visitor's event
waits for it (`ModelLoading.result`), and the model thread warms up right after it.

    loading = ModelLoading.start("assets/mmgen-base", lambda: load_pipeline("assets/mmgen-base"))  # returns at once
    loading.facts.num_codes                                              # from vqvae/config.json
    pipe = loading.result()                                              # waits while it loads
    ModelLoading.ready(pipe)                                             # an already loaded pipeline (tests)

Every model the app loads (each page's pipeline, each tokenizer) loads under `MODEL_LOADS`, one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import model_sampling_defaults, scheduler_short_name

logger = logging.getLogger("mmgen.app")
# One model load at a time, process-wide. diffusers builds a model under accelerate's `init_empty_weights`, which
# patches torch.nn.Module.register_parameter for the whole process while it runs: a model that transformers builds
# on another thread meanwhile (the text encoder of the next page's pipeline) gets parameters on the "meta" device
# and fails to load. A cold start of the three-page app lost a page this way 5 times in 6.
MODEL_LOADS = threading.Lock()
LOAD_FAILED = "The model could not be loaded on this Space: its host can read why in the server's log."


@dataclass(frozen=True)
class ModelFacts:
    """What the page shows about the model before it is loaded."""

    num_codes: int  # codebook size K
    downsample_factor: int  # pixels per token side
    grid_side: int  # tokens per side of a generated image
    scheduler: str | None  # the sampler's short name (a SCHEDULERS key); None: a class without one
    scheduler_class: str  # its diffusers class
    bf16: bool = False  # the DiT's matmuls under bf16 autocast
    sampling: dict = field(default_factory=model_sampling_defaults)  # the model's sampling defaults (the sliders')

    @property
    def image_side(self) -> int:
        """Pixels per side of a generated image (and of the images its repaint and captioning read)."""
        return self.grid_side * self.downsample_factor

    @classmethod
    def of_pipeline(cls, pipe) -> ModelFacts:
        sched = type(pipe.scheduler).__name__
        vq = pipe.vqvae
        side, bf16 = pipe.transformer.config.sample_size, pipe.autocast_dtype is not None
        name = scheduler_short_name(sched)
        return cls(vq.config.num_codes, vq.downsample_factor, side, name, sched, bf16, pipe.sampling_defaults)

    @classmethod
    def of_folder(cls, folder: str | Path, bf16: bool = False) -> ModelFacts:
        """Read from a model folder's config files (no torch, no weights)."""
        folder = Path(folder)

        def config(part: str, name: str = "config.json") -> dict:
            return json.loads((folder / part / name).read_text())

        vq, dit = config("vqvae"), config("transformer")
        sched = config("scheduler", "scheduler_config.json")["_class_name"]
        name = scheduler_short_name(sched)
        index = json.loads((folder / "model_index.json").read_text())
        try:
            sampling = model_sampling_defaults(index.get("sampling_defaults"))
        except ValueError as e:
            raise ValueError(f"{folder / 'model_index.json'}: its sampling_defaults are not usable: {e}") from None
        factor = 2 ** (len(vq["block_channels"]) - 1)
        return cls(vq["num_codes"], factor, dit["sample_size"], name, sched, bf16, sampling)


class ModelLoading:
    """A pipeline loading in the background (or already loaded) and the facts about it."""

    def __init__(self, facts: ModelFacts, future: Future):
        self.facts, self.future = facts, future

    @classmethod
    def ready(cls, pipe) -> ModelLoading:
        future: Future = Future()
        future.set_result(pipe)
        return cls(ModelFacts.of_pipeline(pipe), future)

    @classmethod
    def start(cls, folder: str | Path, load: Callable[[], object], bf16: bool = False) -> ModelLoading:
        """Read the facts from `folder` now, then run `load()` on a thread of its own."""
        future: Future = Future()

        def run():
            t = time.perf_counter()
            try:
                future.set_result(load())
                logger.info("model loaded in %.1f s", time.perf_counter() - t)
            except BaseException as e:  # the host reads why in the log; visitors get a short message
                logger.exception("loading the model failed")
                future.set_exception(e)

        threading.Thread(target=run, name="mmgen-model-loader", daemon=True).start()
        return cls(ModelFacts.of_folder(folder, bf16), future)

    def result(self, timeout: float | None = None):
        """The pipeline, waiting for it while it loads; a failed load is a ValueError for visitors (the host's log
        holds the traceback)."""
        try:
            return self.future.result(timeout)
        except TimeoutError:
            raise
        except Exception as e:
            raise ValueError(LOAD_FAILED) from e

    def done(self) -> bool:
        return self.future.done()
