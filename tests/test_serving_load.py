"""The app served for many visitors (`mmgen.app.serve`, what app.py runs), on a tiny pipeline whose DiT can be
slowed down: a bounded load run (benchmarks/load.py's), one job per visitor, time limits, the queue's size,
request caps, session expiry, and every model call on the one model thread."""

import json
import os
import re
import threading
import time

import httpx
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from conftest import make_tiny_pipe  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import ValidationError  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.load import rss_mb, run_visitors  # noqa: E402
from mmgen.app import Limits, build_demo, serve  # noqa: E402
from mmgen.app.jobs import BUSY  # noqa: E402

LIMITS = Limits(
    max_steps=40,
    max_candidates=2,
    job_seconds=2.0,
    queue_size=3,
    session_minutes=4 / 60,  # 4 s, so that expiry can be watched
    max_upload_mb=0.5,
    max_upload_megapixels=0.5,
)
FAST = ("a red circle", 4, 2.0, 0, False, "ddim", 0.5, 1, False)  # /generate's inputs
MEMORY_BOUND_MB = 40  # what a second round of 6 visitors x 2 generations may add to the server's memory


class Served:
    """The app on a tiny pipeline whose DiT forward sleeps `delay` seconds, and the threads that ran the models."""

    def __init__(self):
        self.delay = 0.0
        self.model_threads: set[str] = set()
        pipe = make_tiny_pipe()
        for module in (pipe.transformer, pipe.vqvae):
            forward = module.forward

            def watched(*args, _forward=forward, _module=module, **kwargs):
                self.model_threads.add(threading.current_thread().name)
                if _module is pipe.transformer and self.delay:
                    time.sleep(self.delay)
                return _forward(*args, **kwargs)

            module.forward = watched
        self.demo = build_demo(pipe, model_name="tiny-test", limits=LIMITS)
        serve(self.demo, LIMITS, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        self.url = self.demo.local_url

    def client(self) -> Client:
        return Client(self.url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def served():
    app = Served()
    try:
        yield app
    finally:
        app.demo.close()


@pytest.fixture
def slow(served):
    served.delay = 0.1
    yield served
    served.delay = 0.0


def _wait_until_joined(job, timeout: float = 10.0) -> None:
    from gradio_client.utils import Status

    end = time.monotonic() + timeout
    while job.status().code in (Status.STARTING, Status.JOINING_QUEUE) and time.monotonic() < end:
        time.sleep(0.02)


def test_six_visitors_twice_no_errors_and_memory_plateaus(served):
    """benchmarks/load.py's run, bounded: 6 visitors x 2 generations, twice; the second round (new sessions)
    must not add more than MEMORY_BOUND_MB: per-session state is small and bounded."""
    first = run_visitors(served.url, visitors=6, generations=2, steps=4, candidates=1)
    assert first.errors == [] and len(first.latencies_s) == 12
    before = rss_mb()
    second = run_visitors(served.url, visitors=6, generations=2, steps=4, candidates=1)
    assert second.errors == [] and len(second.latencies_s) == 12
    assert rss_mb() - before < MEMORY_BOUND_MB


def test_every_model_call_runs_on_the_model_thread(served, tmp_path):
    served.model_threads.clear()
    client = served.client()
    client.predict(*FAST, api_name="/generate")
    client.predict(1, api_name="/show_step")
    client.predict(1, "a blue star", 3.0, 1, api_name="/branch")
    path = tmp_path / "scene.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    client.predict(handle_file(str(path)), api_name="/tokenize")
    assert served.model_threads and all(name.startswith("mmgen-model") for name in served.model_threads)


def test_one_job_per_visitor_refused_before_it_is_queued(slow):
    slow.delay = 0.05  # the first job runs ~0.5 s
    client = slow.client()
    job = client.submit("a red circle", 10, 2.0, 0, False, "ddim", 0.5, 1, False, api_name="/generate")
    _wait_until_joined(job)
    with pytest.raises(ValidationError, match="already have a job queued or running"):
        client.predict(*FAST, api_name="/generate")
    with pytest.raises(ValidationError, match="already have a job"):  # any model event: step mode too
        client.predict(*FAST[:8], api_name="/step_once")
    other = slow.client().predict(*FAST, api_name="/generate")  # another visitor is not held back
    assert "4 steps of ddim" in other[2]
    assert "10 steps of ddim" in job.result()[2]
    assert "4 steps of ddim" in client.predict(*FAST, api_name="/generate")[2]  # the slot is free again
    assert "one at a time" in BUSY


def test_a_job_past_the_time_limit_is_stopped_with_a_message(slow):
    job = slow.client().submit("a red circle", 30, 2.0, 0, False, "ddim", 0.5, 1, False, api_name="/generate")
    with pytest.raises(Exception, match=r"ran past this Space's limit of 2 s per job \(MMGEN_MAX_JOB_SECONDS\)"):
        job.result()
    # the last preview's "step k of 30 ..." is replaced: the run is over
    progress = [out[2] for out in job.outputs()]
    assert "step 1 of 30 ..." in progress[0] and re.fullmatch(r"\*\*Stopped after step \d+ of 30\*\*.*", progress[-1])


def test_captions_and_repaints_past_the_time_limit_are_stopped_too(slow, tmp_path):
    """Model jobs that are not generations (ranking captions: batches of the DiT; a repaint: an inpainting run)
    stop at the time limit with its message, as generations do."""
    client = slow.client()
    Image.new("RGB", (32, 32), "white").save(tmp_path / "white.png")
    image = handle_file(str(tmp_path / "white.png"))
    limit = r"ran past this Space's limit of 2 s per job"
    client.predict(image, api_name="/tokenize")
    client.predict("2,2", api_name="/select_cells")
    with pytest.raises(Exception, match=limit):  # 50 steps (and 4 candidates' first 15) at 0.1 s a step
        client.predict("a red circle", 0, api_name="/repaint")
    slow.delay = 2.5  # per DiT forward: 16 captions x 20 noised samples are two forwards (of 256 rows at most)
    captions = "\n".join(f"a red circle {i}" for i in range(16))
    with pytest.raises(Exception, match=limit):  # checked before each forward: the second comes after 2.5 s
        client.predict(image, captions, api_name="/rank_captions")


def test_one_play_or_export_per_visitor(served):
    """The trajectory's play holds a queue slot for seconds: a visitor may not queue a second one (or an export)
    beside it, so that no one visitor fills the shared queue; another visitor may."""
    client = served.client()
    client.predict("a red circle", 30, 2.0, 0, False, "ddim", 0.5, 1, False, api_name="/generate")
    play = client.submit(api_name="/play")  # 31 frames at 0.15 s: about 5 s
    _wait_until_joined(play)
    for api in ("/play", "/export_gif"):
        with pytest.raises(ValidationError, match="already have a job queued or running"):
            client.predict(api_name=api)
    other = served.client()
    other.predict(*FAST, api_name="/generate")
    assert other.predict(api_name="/export_gif")
    play.result()
    client.predict(*FAST, api_name="/generate")  # (the first run has expired: LIMITS keeps runs 4 s)
    assert client.predict(api_name="/export_gif")  # the slot is free again


def test_a_full_queue_refuses_with_busy(slow):
    """2 jobs run and LIMITS.queue_size wait; a visitor who comes next is told the queue is full."""
    jobs = []
    for client in [slow.client() for _ in range(2 + LIMITS.queue_size + 1)]:
        jobs.append(client.submit("a red circle", 6, 2.0, 0, False, "ddim", 0.5, 1, False, api_name="/generate"))
        _wait_until_joined(jobs[-1])
    outcomes = []
    for job in jobs:
        try:
            outcomes.append("ok" if "6 steps" in job.result()[2] else "?")
        except QueueError:
            outcomes.append("full")
    assert outcomes == ["ok"] * (2 + LIMITS.queue_size) + ["full"]


def test_the_budget_comes_from_the_limits_and_says_why(served):
    client = served.client()
    with pytest.raises(ValidationError, match=r"41 steps is over this Space's limit of 40 \(MMGEN_MAX_STEPS\)"):
        client.predict("a red circle", 41, 2.0, 0, False, "ddim", 0.5, 1, False, api_name="/generate")
    with pytest.raises(ValidationError, match="3 candidates is over this Space's limit of 2"):
        client.predict("a red circle", 4, 2.0, 0, False, "ddim", 0.5, 3, False, api_name="/generate")
    steps = next(c for c in served.demo.config["components"] if c["props"].get("elem_id") == "steps")
    assert steps["props"]["maximum"] == LIMITS.max_steps  # the slider ends where the budget does


def _join(served, data: list, api_name: str = "/generate", **kwargs) -> httpx.Response:
    """A raw queue join, as any HTTP client can send it (gradio_client cannot send NaN or oversized bodies)."""
    fn_index = next(i for i, d in served.demo.fns.items() if d.api_name == api_name.strip("/"))
    body = {"data": data, "fn_index": fn_index, "session_hash": "raw-http-test", "event_data": None}
    headers = {"content-type": "application/json"}
    return httpx.post(f"{served.url}gradio_api/queue/join", content=json.dumps(body), headers=headers, **kwargs)


def test_nan_and_infinity_are_refused_with_a_message(served):
    for guidance in (float("nan"), float("inf")):
        response = _join(served, ["a red circle", 4, guidance, 0, False, "ddim", 0.5, 1, False])
        assert response.status_code == 422
        assert "Guidance must be a number" in response.json()["detail"][2]["message"]


def test_oversized_requests_are_refused_before_they_are_read(served, tmp_path):
    response = _join(served, ["x" * 300_000, 4, 2.0, 0, False, "ddim", 0.5, 1, False])
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    body = (b"x" * 65536 for _ in range(5))  # streamed, no declared length
    response = httpx.post(f"{served.url}gradio_api/queue/join", content=body)
    assert response.status_code == 413
    big = os.urandom(700_000)  # over LIMITS.max_upload_mb
    response = httpx.post(f"{served.url}gradio_api/upload", files={"files": ("big.png", big, "image/png")})
    assert response.status_code == 413 and "files up to" in response.json()["detail"]
    (tmp_path / "big.png").write_bytes(big)
    with pytest.raises(Exception, match="exceeds the maximum file size"):  # gradio_client checks it first
        served.client().predict(handle_file(str(tmp_path / "big.png")), api_name="/tokenize")


def test_an_image_too_large_is_refused_from_its_header(served, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (1000, 1000)).save(path)  # 1 MP, a few hundred bytes: over LIMITS' 0.5 MP
    with pytest.raises(Exception, match=r"too large: 1000x1000 is over 500,000 pixels") as refused:
        served.client().predict(handle_file(str(path)), api_name="/tokenize")
    message = str(refused.value)
    assert "/tmp" not in message and "Error" not in message.replace("AppError", "")  # no path, no class name


def _completed(served, response: httpx.Response, session: str = "raw-http-test") -> dict:
    """The `process_completed` message of a job joined with `_join`."""
    assert response.status_code == 200, response.text
    url = f"{served.url}gradio_api/queue/data?session_hash={session}"
    with httpx.stream("GET", url, timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"process_completed"' in line:
                return json.loads(line[5:])
    raise AssertionError("no process_completed message")


@pytest.mark.parametrize(
    "image, refused", [(Image.new("RGB", (32, 32), (0, 90, 200)), False), (Image.new("1", (8000, 7800)), True)]
)
def test_a_data_url_image_is_read_like_an_upload(served, image, refused):
    """A data: URL is checked from its header too: a 62 MP one-colour PNG (10 kB) is refused, never decoded."""
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    done = _completed(
        served,
        _join(served, [{"url": url, "path": None, "meta": {"_type": "gradio.FileData"}}, None, None], "/tokenize"),
    )
    if refused:
        assert not done["success"] and "too large: 8000x7800 is over 500,000 pixels" in done["output"]["error"]
    else:
        assert done["success"] and "PSNR" in done["output"]["data"][2]


def test_sessions_expire(served):
    client = served.client()
    client.predict(*FAST, api_name="/generate")
    assert "Step 1 of 4" in client.predict(1, api_name="/show_step")[-1]
    time.sleep(LIMITS.session_seconds + 2)  # gradio drops expired state once a second
    with pytest.raises(Exception, match="Generate an image first"):
        client.predict(1, api_name="/show_step")
