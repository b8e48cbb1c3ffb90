"""Serving the explorer to many visitors: the queue, request and upload caps, how many sessions are kept, and
error messages that never show raw exception text.

    demo = build_demo(pipe, limits=limits)
    serve(demo, limits, server_name="0.0.0.0")   # what app.py does; tests pass prevent_thread_lock=True

`RequestSizeLimit` refuses an oversized request before the app reads it: uploads above `MMGEN_MAX_UPLOAD_MB`,
anything else (a prompt, a cell list, a `data:` URL) above `MAX_REQUEST_KB`, whether the size is declared or
streamed. gradio's own `max_file_size` checks each uploaded file too.
"""

from __future__ import annotations

import json

import gradio as gr
from starlette.middleware import Middleware

from .limits import CONCURRENCY, MAX_REQUEST_KB, Limits

QUEUE_POLL_S = 0.01  # how often an idle queue looks for a new job (gradio's own: 1 ms)
PROGRESS_POLL_S = 0.1  # how often it looks for progress to send (gradio's own: 10 ms; the app sends none)

MAX_SESSIONS = (
    256  # sessions gradio keeps (its default: 10,000), ~190 kB each even without state; least recent go first
)
UPLOAD_OVERHEAD = 64 * 1024  # a multipart body's headers and boundaries around the file


class RequestSizeLimit:
    """ASGI middleware: 413, with a short message, for a request body over its limit."""

    def __init__(self, app, max_upload_bytes: int, max_request_bytes: int = MAX_REQUEST_KB * 1024):
        self.app, self.max_upload_bytes, self.max_request_bytes = app, max_upload_bytes, max_request_bytes

    def limit(self, path: str) -> int:
        return (
            self.max_upload_bytes + UPLOAD_OVERHEAD if path.rstrip("/").endswith("/upload") else self.max_request_bytes
        )

    def message(self, limit: int) -> str:
        if limit > self.max_request_bytes:
            return f"The upload is too large: this Space accepts files up to {self.max_upload_bytes / 1024**2:g} MB."
        return (
            f"The request is too large (over {self.max_request_bytes // 1024} kB): shorten the text, or send "
            "images as uploaded files (gradio_client's handle_file), not data: URLs."
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self.refuse(send, limit)
        received, started, too_large = 0, False, False

        async def counted_receive():
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # stop reading; whatever the app answers, the answer is 413
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            if too_large:
                if not started:
                    started = True
                    await self.refuse(send, limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self.refuse(send, limit)

    async def refuse(self, send, limit: int) -> None:
        body = json.dumps({"detail": self.message(limit), "error": self.message(limit)}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def warm_up(pipe) -> None:
    """A short generation with the model's own settings but its steps, so that the first visitor does not pay for
    torch's first calls: its thread pool, and the kernels of each batch shape a default run uses (the candidates'
    batch, the guided pair, the unguided last steps, the decoder)."""
    pipe.with_scheduler()("warm-up", num_inference_steps=4)


def quiet_queue(demo: gr.Blocks) -> None:
    """gradio's queue looks for a new job every millisecond while none waits (`Queue.sleep_when_free`), and for
    progress to send every 10 ms: about 1,100 wake-ups a second of the server's event loop, idle or not, each
    taking the GIL, and a core from the model's threads. Every QUEUE_POLL_S and PROGRESS_POLL_S instead: a job
    starts at most 10 ms later, and the app sends no progress bars (its previews are its progress)."""
    queue = demo._queue
    for name, seconds in (("sleep_when_free", QUEUE_POLL_S), ("progress_update_sleep_when_free", PROGRESS_POLL_S)):
        if not isinstance(getattr(queue, name, None), float):  # tests/test_app.py fails on a gradio that renames it
            raise RuntimeError(f"gradio's queue has no {name}: see mmgen.app.serving.quiet_queue")
        setattr(queue, name, seconds)


def serve(demo: gr.Blocks, limits: Limits, **launch_kwargs):
    """Queue and launch `demo` (from `build_demo`) with `limits`: a bounded queue, model jobs `CONCURRENCY` at
    a time, capped uploads and requests, at most `MAX_SESSIONS` sessions kept, no raw exception text for
    visitors; the model thread warms up as soon as the pipeline is loaded."""
    for ctx in demo.mmgen_contexts:  # every model's page
        ctx.loading.future.add_done_callback(
            lambda f, ctx=ctx: f.exception() or ctx.compute.submit(warm_up, f.result())
        )
    # api_open=False: no /gradio_api/run/ routes, which ran a job outside the queue, its size and every visitor limit
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=CONCURRENCY, api_open=False)
    quiet_queue(demo)
    middleware = Middleware(RequestSizeLimit, max_upload_bytes=limits.max_upload_bytes)
    kwargs = {
        "max_file_size": limits.max_upload_bytes,
        "show_error": False,
        "state_session_capacity": MAX_SESSIONS,
        "app_kwargs": {"middleware": [middleware]},
        **launch_kwargs,
    }
    return demo.launch(**kwargs)
