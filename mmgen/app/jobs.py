"""Model jobs on a shared Space: at most one per visitor, queued or running, and a time limit on each.

A visitor is a gradio session: one browser tab, or one `gradio_client.Client`. Each model event (generate, step
mode, branch, repaint) is wired with `JobGate.model_event(check)`: in the "model" concurrency group, with a gradio
*validator* that runs when the job asks to join the queue, before it waits or costs anything. The validator
applies the event's checks (e.g. `Limits.check_sampling`) and admits the session's job only when the session has
none queued or running; otherwise the request is refused with a message under the input it concerns (for API
clients: the error's message). Model events take their inputs as sent (`preprocess=False`), so that gradio's own
range checks, which would refuse without a message once an event has a validator, leave every check to the app's
one check, in the validator and again in the handler. The handler runs its job inside `JobGate.job`, which frees
the session's slot when the job ends, however it ends, and gives it a `Deadline`.

    gate = JobGate(limits)
    button.click(generate, inputs, outputs, **gate.model_event(check_controls))
    def generate(..., request: gr.Request):
        with gate.job(request) as deadline:
            ...
            deadline.check()  # between steps: stops a job past MMGEN_MAX_JOB_SECONDS with a message

Events that are no model job but hold a queue slot a while (the trajectory's play, its exports, loading a
tokenizer) are wired with `JobGate.wait_event(...)` and run inside `JobGate.job(request, WAIT)`: one of them per
visitor too, queued or running, so that no visitor can fill the shared queue with them.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr

from .errors import for_people
from .limits import ENV, Limits

UNREADABLE = "These inputs could not be read: one of them is not a value of its kind (sent through the API?)."
BUSY = "You already have a job queued or running: wait for it to finish, then try again (one at a time per visitor)."
MODEL, WAIT = "model", "wait"  # the kinds of job a visitor may have one of each of
# A running job that checks its deadline (each step, each batch, each frame) and has not for this long was cancelled
# (gradio leaves a cancelled handler's generator suspended, so its `finally` never frees the slot): its slot is free.
QUIET_S = 60.0


class JobTimeLimit(gr.Error):
    """A job ran past the Space's time limit per job."""


class Deadline:
    def __init__(self, seconds: float, beat: Callable[[], None] | None = None):
        self.seconds, self.end, self._beat = seconds, time.monotonic() + seconds, beat

    def beat(self) -> None:
        """Say the job still runs (a job that stops saying so for QUIET_S gives its slot back)."""
        if self._beat is not None:
            self._beat()

    def check(self) -> None:
        """Stop a job past the limit; else `beat`."""
        self.beat()
        if time.monotonic() > self.end:
            raise JobTimeLimit(
                f"This job ran past this Space's limit of {self.seconds:g} s per job ({ENV['job_seconds']}) and "
                "was stopped: try fewer steps or candidates, or try again when the Space is less busy."
            )

    def callback(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        """As a pipeline's `callback_on_step_end`: the same check after every step of a `pipe(...)` call."""
        self.check()
        return {}


class JobGate:
    """Which sessions have a model job queued or running. A slot is taken at admission (the job joins the queue)
    and freed when its handler ends; a slot whose job never started (its client left the queue) is given back
    after the longest a queued job can wait, or at once when the browser tab closes (`forget`)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.stale_after_s = limits.queue_size * limits.job_seconds + 60
        self._since: dict[tuple[str, str], float] = {}  # (kind, session) -> when its job was admitted or started
        self._beats: dict[tuple[str, str], float] = {}  # (kind, session) -> when its running job last checked in
        self._owners: dict[tuple[str, str], object] = {}  # (kind, session) -> the running job's token
        self._lock = threading.Lock()

    def admit(self, session: str | None, kind: str = MODEL) -> None:
        """Take the session's slot of `kind` for a job about to join the queue; ValueError(BUSY) when it holds it."""
        now = time.monotonic()
        with self._lock:
            self._since = {k: t for k, t in self._since.items() if self._holds(k, t, now)}
            self._beats = {k: t for k, t in self._beats.items() if k in self._since}
            self._owners = {k: t for k, t in self._owners.items() if k in self._since}
            if session is not None and (kind, session) in self._since:
                raise ValueError(BUSY)
            if session is not None:
                self._since[kind, session] = now

    def _holds(self, key: tuple[str, str], since: float, now: float) -> bool:
        """Whether a slot is still taken: neither stale (a queued job whose client left) nor quiet (a running job
        that stopped checking in: cancelled)."""
        beat = self._beats.get(key)
        return now - since < self.stale_after_s and (beat is None or now - beat < QUIET_S)

    @contextmanager
    def job(self, request: gr.Request | None, kind: str = MODEL) -> Iterator[Deadline]:
        """The session's job of `kind`, running: its deadline; the slot is freed when the job ends. The job holds
        a token: a job given up as cancelled (quiet) that runs on neither checks in for, nor frees, the slot of the
        visitor's next job."""
        session, token = getattr(request, "session_hash", None), object()
        if session is not None:
            with self._lock:
                self._since[kind, session], self._owners[kind, session] = time.monotonic(), token
        beat = None if session is None else functools.partial(self._beat, (kind, session), token)
        try:
            yield Deadline(self.limits.job_seconds, beat)
        finally:
            with self._lock:
                if session is not None and self._owners.get((kind, session)) is token:
                    self._drop((kind, session))

    def _beat(self, key: tuple[str, str], token: object) -> None:
        with self._lock:
            if self._owners.get(key) is token:
                self._beats[key] = time.monotonic()

    def _drop(self, key: tuple[str, str]) -> None:
        for held in (self._since, self._beats, self._owners):
            held.pop(key, None)

    def busy(self, request: gr.Request | None, kind: str = MODEL) -> bool:
        """Whether the request's session has a job of `kind` queued or running (e.g. a generation under way)."""
        session = getattr(request, "session_hash", None)
        with self._lock:
            since = self._since.get((kind, session))
            return session is not None and since is not None and self._holds((kind, session), since, time.monotonic())

    def forget(self, session: str | None, kind: str | None = None) -> None:
        """Free the session's slot of `kind` (None: of every kind)."""
        with self._lock:
            for k in (MODEL, WAIT) if kind is None else (kind,):
                self._drop((k, session))

    def on_unload(self, request: gr.Request) -> None:
        """`demo.unload`: a closed browser tab gives its slots back."""
        self.forget(getattr(request, "session_hash", None))

    def model_event(self, check: Callable[..., tuple[int, str] | None] | None = None, message_at: int = 0) -> dict:
        """The event options of a model event (see the module's docstring): `button.click(fn, ..., **these)`."""
        return {"concurrency_id": "model", "validator": self.admission(check, message_at), "preprocess": False}

    def wait_event(self, concurrency_id: str, **options) -> dict:
        """The event options of an event that holds a queue slot a while without a model job (see the module's
        docstring), in its own concurrency group: one per visitor, queued or running."""
        validator = self.admission(kind=WAIT)
        return {"concurrency_id": concurrency_id, "validator": validator, "preprocess": False, **options}

    def admission(
        self, check: Callable[..., tuple[int, str] | None] | None = None, message_at: int = 0, kind: str = MODEL
    ) -> Callable:
        """A gradio validator for a model event: `check(*inputs)` returns (index of the input, message) when the
        inputs are refused, else None; then the session is admitted (`admit`). The refusal appears under that
        input in the browser, and as the error's message for API clients. A refusal that concerns no one input
        (the visitor is busy; a check that raised, or could not read an input) appears under input `message_at`:
        the first one a visitor sees (an event whose first input is a gr.State names another)."""

        def validate(request: gr.Request, *values):
            try:
                refused = check(*values) if check is not None else None
            except ValueError as e:
                refused = message_at, for_people(str(e))
            except Exception:  # a check that cannot even read the inputs (an API call sent a list for a name)
                refused = message_at, UNREADABLE
            if refused is None:
                try:
                    self.admit(getattr(request, "session_hash", None), kind)
                except ValueError as e:
                    refused = message_at, str(e)
            index, message = refused if refused is not None else (-1, "")
            results = [gr.validate(i != index, message if i == index else "") for i in range(len(values))]
            return results[0] if len(results) == 1 else results  # gradio reads one input's as a single output

        return validate
