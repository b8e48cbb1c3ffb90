"""The tokenizers the explorer shows, and the picker the Tokenizer and Codebook tabs share: the generator's own
tokenizer, those a host preloads (MMGEN_TOKENIZERS, comma-separated folders or Hub ids) and those visitors load
by folder or Hugging Face Hub id (`mmgen.load_tokenizer`: mmgen's VQ-VAE or any diffusers `VQModel`).

Loading reads or downloads files, so it runs on a loader thread of its own, never on the model thread: a visitor
loading a 270 MB MoVQ never holds up another's generation, and the load box shows how long it has been going.
Model calls of a loaded tokenizer go to the model thread one call at a time (`OnModelThread`), so a long job made
of many calls (an atlas: one encode per reference image, one decode per 64 tiles) takes turns with generations.
At most `MMGEN_MAX_TOKENIZERS` tokenizers that visitors loaded are kept, the least recently used going first with
their atlases; the generator's own and the preloaded ones stay.

    registry = TokenizerRegistry(own_tokenizer, "mmgen-base", compute, reference_set)
    key, future = registry.load("amused/amused-256")    # key: what the picker shows; future: done when loaded
    tok = registry.get(key)                              # a Tokenizer whose model calls run on the model thread
    atlas = registry.atlas(key)                          # its CodebookAtlas, built on first use
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import is_in_or_equal
from PIL import Image

from ..codebook import CodebookAtlas
from ..model_paths import HUB_ID
from ..tokenizers import (
    HUB_TOKENIZERS,
    SHIPPED_TOKENIZERS,
    TOKENIZER_FOLDERS,
    Tokenizer,
    load_tokenizer,
    tokenizer_path,
    weights_downloaded,
)
from ..viz import code_histogram
from .compute import ModelThread
from .errors import handler
from .jobs import WAIT, JobGate
from .limits import ENV
from .loading import MODEL_LOADS

logger = logging.getLogger("mmgen.app")

PRELOAD_ENV = "MMGEN_TOKENIZERS"
MAX_SOURCE_CHARS = 300  # a folder path or a Hub repo id
LOAD_WAIT_S = 600  # a visitor's load event waits this long, then says the tokenizer is still loading
# Any other event (tokenize, compare, codebook) waits this long for a tokenizer still loading, then says so: it holds
# one of the queue's few workers meanwhile, which a load of a large Hub repo would keep from everyone for minutes;
# the host's preloaded folders, still loading just after the start, take seconds.
EVENT_WAIT_S = 30.0
PROGRESS_EVERY_S = 1.0  # the load box's "Loading ... (12 s)" line
HUB_LOOKUP_S = 10.0  # the Hub's file list, read before a visitor's download


def preload_sources(environ=os.environ) -> list[str]:
    """MMGEN_TOKENIZERS: comma-separated folders or Hub ids, each loaded at start."""
    return [s.strip() for s in environ.get(PRELOAD_ENV, "").split(",") if s.strip()]


class OnModelThread(Tokenizer):
    """`inner` with every model call (encode, decode, ids to codes) run on the app's model thread."""

    def __init__(self, inner: Tokenizer, compute: ModelThread):
        self.inner, self.compute = inner, compute
        self.model, self.name, self.metric = inner.model, inner.name, inner.metric

    codebook = property(lambda self: self.inner.codebook)
    downsample_factor = property(lambda self: self.inner.downsample_factor)
    kind = property(lambda self: self.inner.kind)

    def encode(self, x):
        return self.compute(self.inner.encode, x)

    def decode(self, latents):
        return self.compute(self.inner.decode, latents)

    def decode_indices(self, indices):
        return self.compute(self.inner.decode_indices, indices)

    def indices_to_codes(self, indices):
        return self.compute(self.inner.indices_to_codes, indices)


@dataclass
class Entry:
    source: str  # as typed: a folder, a Hub id, a shipped name ("" for the generator's own)
    future: Future  # -> OnModelThread
    pinned: bool  # the generator's own and the preloaded ones are never dropped
    used: float = field(default_factory=time.monotonic)  # last asked for: the least recent visitors' go first
    atlas: CodebookAtlas | None = None
    atlas_lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self) -> bool:
        return self.future.done() and self.future.exception() is not None


class TokenizerRegistry:
    """The app's loaded tokenizers by key (the name the picker shows), shared by every session; thread-safe."""

    def __init__(
        self,
        own: Tokenizer | Future,
        own_key: str,
        compute: ModelThread,
        reference: Callable[[int], list[Image.Image]],
        max_loaded: int = 4,
        own_label: str | None = None,
        max_download_mb: float | None = None,
    ):
        """`own`: the generator's tokenizer, or a Future of it (the pipeline still loading); `own_label`: how the
        picker shows it (default: its own); `max_download_mb`: the largest Hub tokenizer a visitor may load."""
        self.own_key, self.compute, self.max_loaded, self.own_label = own_key, compute, max_loaded, own_label
        self.max_download_mb = max_download_mb
        self.preloaded: list[str] = []  # the keys of those loaded at start, in order (compared by default)
        self._reference, self._reference_images = reference, {}  # downsample factor -> its reference set
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmgen-tokenizer-loader")
        loaded: Future = Future()
        if isinstance(own, Future):
            own.add_done_callback(functools.partial(wrap_on_model_thread, loaded, compute))
        else:
            loaded.set_result(OnModelThread(own, compute))
        self._entries: dict[str, Entry] = {own_key: Entry("", loaded, pinned=True)}  # in the picker's order

    # ---------------------------------------------------------------- loading
    def load(self, source: str, pinned: bool = False, after: Future | None = None) -> tuple[str, Future]:
        """Start loading `source` on the loader thread (or find it loaded or loading): its key and a Future of
        its tokenizer, which fails with a ValueError saying why for people. `after`: the load waits for it."""
        source = check_source(source)
        with self._lock:
            if source == self.own_key:
                return self.own_key, self._entries[self.own_key].future
            for key, entry in self._entries.items():
                if same_source(entry.source, source) and not entry.failed():
                    entry.pinned, entry.used = entry.pinned or pinned, time.monotonic()
                    return key, entry.future
            self._entries = {k: e for k, e in self._entries.items() if not e.failed()}  # a failed one may retry
            key = self._new_key(source)
            limit = None if pinned else self.max_download_mb
            self._entries[key] = Entry(source, self._loader.submit(self._load, source, after, limit), pinned)
            visitors = sorted((e.used, k) for k, e in self._entries.items() if not e.pinned and k != key)
            for _, k in visitors[: max(0, len(visitors) + (not pinned) - self.max_loaded)]:
                del self._entries[k]  # with its atlas; a session still showing it is told to load it again
            future = self._entries[key].future
        return key, future

    def preload(self, sources: list[str], after: Future | None = None) -> None:
        """Load these in the background once `after` is done (the generator's pipeline: diffusers' lazy imports
        are not safe from two threads at once), listed in the picker at once; a failure is logged for the host."""
        for source in sources:
            try:
                key, future = self.load(source, pinned=True, after=after)
            except ValueError as e:
                logger.error("preloading the tokenizer %r: %s", source, e)
                continue
            self.preloaded += [key] if key not in self.preloaded and key != self.own_key else []
            future.add_done_callback(functools.partial(log_failure, source))

    def _load(self, source: str, after: Future | None = None, max_mb: float | None = None) -> OnModelThread:
        if after is not None:
            wait([after])
        if max_mb is not None:
            with MODEL_LOADS:  # huggingface_hub's lazy imports: never beside a model's load and its imports
                check_download(source, max_mb)
        t = time.perf_counter()
        try:
            with MODEL_LOADS:  # never beside another model's load (mmgen.app.loading)
                tok = load_tokenizer(source)
        except ValueError as e:
            raise ValueError(load_failure(source, e)) from None
        except Exception as e:  # e.g. a truncated weights file: tell the host, not the visitor, what broke
            logger.exception("loading the tokenizer %r", source)
            raise ValueError(f"{source} could not be loaded: its files look incomplete or damaged.") from e
        logger.info("loaded the tokenizer %s in %.1f s", tok.label, time.perf_counter() - t)
        return OnModelThread(tok, self.compute)

    def _new_key(self, source: str) -> str:
        """The picker's name for `source`: a folder's name (the root's path: never "", the generator's key)."""
        folder = os.path.isdir(source) and source not in SHIPPED_TOKENIZERS
        base = (Path(source).resolve().name or str(Path(source).resolve())) if folder else source
        key, n = base, 2
        while key in self._entries:  # another folder of the same name
            key, n = f"{base} ({n})", n + 1
        return key

    # ---------------------------------------------------------------- using
    def get(self, key: str | None, wait_s: float = EVENT_WAIT_S) -> OnModelThread:
        """The tokenizer under `key` (None or "": the generator's), waiting up to `wait_s` for it while it loads."""
        if key is not None and not isinstance(key, str):  # an API call's list
            raise ValueError(f"A tokenizer is named by text, got {str(key)[:40]}.")
        key = key or self.own_key
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.used = time.monotonic()
        if entry is None:
            raise ValueError(
                f"The tokenizer {key!r} is not loaded on this Space (any more): load it again under "
                "'Load another tokenizer'."
            )
        try:
            return entry.future.result(timeout=wait_s)
        except FutureTimeout:
            raise ValueError(f"{key} is still loading: try again in a moment.") from None

    def atlas(self, key: str | None) -> CodebookAtlas:
        """The tokenizer's codebook atlas over the reference set, built on first use (its encodes take turns with
        other jobs on the model thread)."""
        tok = self.get(key)
        with self._lock:
            entry = self._entries.get(key or self.own_key)
            f = tok.downsample_factor
            if f not in self._reference_images:
                self._reference_images[f] = self._reference(f)
            images = self._reference_images[f]
        if entry is None:  # dropped meanwhile: build one for this call
            return CodebookAtlas.build(tok, images)
        with entry.atlas_lock:
            if entry.atlas is None:
                entry.atlas = CodebookAtlas.build(tok, images)
            return entry.atlas

    def choices(self) -> list[tuple[str, str]]:
        """(label, key) for the picker: loaded ones with their size, loading ones marked so."""
        with self._lock:
            entries = [(k, e) for k, e in self._entries.items() if not e.failed()]
        out = []
        for key, entry in entries:
            if key == self.own_key and self.own_label:
                out.append((self.own_label, key))
                continue
            if not entry.future.done():
                out.append((f"{key} (loading...)", key))
                continue
            tok = entry.future.result()
            own = " · the generator's" if key == self.own_key else ""
            out.append((f"{key} ({tok.num_codes:,} codes, f{tok.downsample_factor}){own}", key))
        return out

    def keys(self) -> list[str]:
        return [key for _, key in self.choices()]


def wrap_on_model_thread(loaded: Future, compute: ModelThread, own: Future) -> None:
    if own.exception() is not None:
        loaded.set_exception(own.exception())
    else:
        loaded.set_result(OnModelThread(own.result(), compute))


def log_failure(source: str, future: Future) -> None:
    if future.exception() is not None:
        logger.error("the preloaded tokenizer %r did not load: %s", source, future.exception())


def check_download(source: str, max_mb: float) -> None:
    """ValueError when the Hub repo `source`'s tokenizer weights (its root's, vqvae/'s or movq/'s, the largest) exceed
    `max_mb`, read from the Hub's file list before any download; anything else is left to the load to report."""
    from huggingface_hub import HfApi, constants

    if not HUB_ID.match(source) or os.path.isdir(source) or constants.is_offline_mode():  # a Hub id, online only
        return
    try:  # a timeout: a Hub that never answers would hold the one loader thread, and every load behind it
        files = HfApi().model_info(source, files_metadata=True, timeout=HUB_LOOKUP_S).siblings or []
    except Exception:  # unknown, private or unreachable: the load says which
        return
    weights: dict[str, dict[str, int]] = {}  # folder -> {file name: bytes}
    for f in files:
        folder, _, name = f.rfilename.rpartition("/")
        if folder in ("", *TOKENIZER_FOLDERS) and name.endswith(".safetensors"):
            weights.setdefault(folder, {})[name] = f.size or 0
    mb = max((weights_downloaded(names) for names in weights.values()), default=0) / 2**20
    if mb > max_mb:
        raise ValueError(
            f"{source}: its tokenizer's weights are {mb:,.0f} MB, over this Space's limit of {max_mb:,.0f} MB for "
            f"a tokenizer loaded from the page ({ENV['max_tokenizer_mb']})."
        )


def same_source(a: str, b: str) -> bool:
    """Whether two sources name one tokenizer: the same text, or the same folder however spelt ("assets/vqgan-f8",
    "./assets/vqgan-f8/", "vqgan-f8"), so that no visitor loads, and builds an atlas of, one folder many times."""
    where = [tokenizer_path(s) for s in (a, b)]  # as `load_tokenizer` resolves them
    return a == b or all(map(os.path.isdir, where)) and os.path.samefile(*where)


def check_source(source) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ValueError("Type a model folder or a Hugging Face Hub repo id first, e.g. amused/amused-256.")
    if len(source) > MAX_SOURCE_CHARS:
        raise ValueError(f"That is {len(source):,} characters: a folder or Hub id has at most {MAX_SOURCE_CHARS}.")
    return source.strip()


def visitor_source(source) -> str:
    """What a visitor may load (checked): a Hub repo id, a shipped tokenizer's name, or a folder inside the app's
    own (its working directory), never another folder of the server, which the page would load by path and tell
    apart from a missing one. The host names other folders in MMGEN_TOKENIZERS."""
    source = check_source(source)
    if not is_in_or_equal(Path.cwd() / Path(source).expanduser(), Path.cwd()):
        raise ValueError(
            f"{source}: folders outside this app's own folder can't be loaded from the page. Name a Hugging Face "
            f"Hub repo id or one of {', '.join(SHIPPED_TOKENIZERS)} (the host can list others in MMGEN_TOKENIZERS)."
        )
    return source


def load_failure(source: str, e: ValueError) -> str:
    """The library's reason why `source` did not load, for people: its own messages pass (not a VQ tokenizer, no
    tokenizer in this folder); a failed download says whether the Space is offline."""
    from huggingface_hub import constants

    if e.__cause__ is None:
        return str(e)
    if os.path.isdir(source):
        return f"{source}: its weights could not be read (missing or incomplete files)."
    if constants.is_offline_mode() or _unreachable(e):
        return (
            f"{source} is not a folder on this Space, and this Space can't reach the Hugging Face Hub (offline, "
            "or no network), so it can't fetch it: load a local folder or a tokenizer already in its Hub cache."
        )
    return (
        f"{source} could not be loaded from the Hugging Face Hub: check the repo id (e.g. amused/amused-256); "
        "private or gated repos can't be loaded here."
    )


def _unreachable(e: BaseException) -> bool:
    """Whether a failed load could not reach the Hub (no network, and the files are not in the cache)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    while e is not None and not isinstance(e, LocalEntryNotFoundError):
        e = e.__cause__ or e.__context__
    return e is not None


# -------------------------------------------------------------------- the picker
SUGGESTIONS = [[name] for name in SHIPPED_TOKENIZERS] + [[repo] for repo, _ in HUB_TOKENIZERS.values()]
SUGGESTION_LABELS = list(SHIPPED_TOKENIZERS) + list(HUB_TOKENIZERS)


class TokenizerPicker:
    """A dropdown of the loaded tokenizers and a box to load another; `dropdown`'s value is a registry key."""

    def __init__(self, registry: TokenizerRegistry, elem_id: str, jobs: JobGate):
        self.registry, self.jobs = registry, jobs  # a load is a WAIT job: one at a time per visitor
        self.dropdown = gr.Dropdown(
            registry.choices(),
            value=registry.own_key,
            label="Tokenizer",
            allow_custom_value=True,  # keys loaded in other sessions are valid too; the handlers check them
            elem_id=elem_id,
        )
        with gr.Accordion("Load another tokenizer", open=False, elem_id=f"{elem_id}-load-box"):
            self.source = gr.Textbox(
                label="A folder inside this app's folder, or a Hugging Face Hub repo id (if the Space is online)",
                placeholder="amused/amused-256",
                max_length=MAX_SOURCE_CHARS,
                elem_id=f"{elem_id}-source",
            )
            self.load_btn = gr.Button("Load", elem_id=f"{elem_id}-load")
            self.status = gr.Markdown(elem_id=f"{elem_id}-status")
            gr.Examples(
                SUGGESTIONS,
                inputs=self.source,
                example_labels=SUGGESTION_LABELS,
                label="VQ tokenizers to load: shipped ones, and public ones (from the Hub on first use)",
                api_name=f"{elem_id.replace('-', '_')}_examples",
                api_visibility="private",
            )

    def wire(self, api_name: str, public: bool = True):
        """The load events (button and Enter); returns the button's, to chain on (`.success`)."""
        options = self.jobs.wait_event("tokenizer-load", concurrency_limit=4)
        outputs = [self.status, self.dropdown]
        self.source.submit(self.load, self.source, outputs, api_visibility="private", **options)
        visibility = "public" if public else "private"
        return self.load_btn.click(
            self.load, self.source, outputs, api_name=api_name, api_visibility=visibility, **options
        )

    def refresh(self):
        """The dropdown's choices as they are now (others may have loaded tokenizers)."""
        return gr.update(choices=self.registry.choices())

    @handler
    def load(self, source: str | None, request: gr.Request):
        """Load a tokenizer by folder or Hub id; yields "Loading ... (n s)" until it is ready, then picks it."""
        with self.jobs.job(request, WAIT) as deadline:
            yield from self._load(source, deadline.beat)

    def _load(self, source: str | None, beat=lambda: None):
        key, future = self.registry.load(visitor_source(source))
        start = time.monotonic()
        while not future.done():
            beat()  # a load its visitor cancelled stops beating: its slot is free in a minute
            elapsed = time.monotonic() - start
            if elapsed > LOAD_WAIT_S:
                raise gr.Error(f"{key} is still loading after {elapsed:.0f} s: it will appear in the list when ready.")
            yield f"Loading **{key}**... {elapsed:.0f} s", gr.skip()
            try:
                future.result(timeout=PROGRESS_EVERY_S)
            except FutureTimeout:
                pass
            except ValueError:
                break
        tok = self.registry.get(key)
        facts = tok.inner.describe()
        status = (
            f"Loaded **{key}** in {time.monotonic() - start:.1f} s: {tok.kind}, {tok.num_codes:,} codes of "
            f"{tok.code_dim} dims, {tok.downsample_factor}×{tok.downsample_factor} pixels per token, "
            f"{facts['params_m']:.1f}M parameters."
        )
        yield status, gr.update(choices=self.registry.choices(), value=key)


# -------------------------------------------------------------------- a visitor's own usage
@dataclass(frozen=True)
class UploadUsage:
    """Per tokenizer key: how often each code occurs in the images this session tokenized or compared (each
    image counted once per tokenizer), for the Codebook tab's usage and perplexity over "your uploads"."""

    counts: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (K,) int64
    images: dict[str, int] = field(default_factory=dict)  # key -> images counted
    seen: frozenset[tuple[str, str]] = frozenset()  # (image digest, key)

    def add(self, key: str, image: Image.Image, indices, num_codes: int) -> UploadUsage:
        digest = hashlib.sha1(image.tobytes()).hexdigest()
        if (digest, key) in self.seen:
            return self
        counts = self.counts.get(key, np.zeros(num_codes, dtype=np.int64)) + code_histogram(indices, num_codes)
        return UploadUsage(
            {**self.counts, key: counts},
            {**self.images, key: self.images.get(key, 0) + 1},
            self.seen | {(digest, key)},
        )
