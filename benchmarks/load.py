"""Many visitors at once: N visitors x M generations against a locally started app (loopback only).

    python benchmarks/load.py                          # 20 visitors x 3 generations, the shipped model
    python benchmarks/load.py --visitors 6 --generations 2 --steps 10 --out benchmarks/results-load.json

It starts `python app.py` on 127.0.0.1 and reports, in one run on this machine:
- cold start: from the process's start to the page served, and to the first image;
- in-app vs script: one visitor's generation (gradio_client round trip) and the same `pipe(...)` call in a
  process of its own (with torch's default threads, as the app's model thread has, and with one), timed in turn
  on an idle server: medians of wall and CPU seconds (the ratio is what the app adds);
- a browser visitor: Debian's Chromium (Playwright) clicks Generate on the page: the server's CPU seconds per
  generation, everything the page sets off included (skipped without Chromium);
- load: each visitor is a `gradio_client.Client` (a session of its own) in a thread, making its generations one
  after another (a visitor refused by a full queue waits a second and asks again, as a person would): errors,
  refusals, p50/p95 latency (queue wait included), throughput;
- the server's resident memory (VmRSS) before the load, after it, after a second identical round (it should
  plateau: sessions and their runs are bounded and expire), and after `--expire-s` idle seconds.

`run_visitors` and `rss_mb` are what tests/test_serving_load.py uses against an app on the tiny pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "a large red circle in the top left on a white background",
    "a small blue star at the bottom on a black background",
    "a green triangle to the left of a yellow square on a gray background",
]


@dataclass
class LoadResult:
    visitors: int
    generations: int
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refusals: int = 0  # "queue full", asked again

    @property
    def p50_s(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else float("nan")

    @property
    def p95_s(self) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))] if xs else float("nan")

    @property
    def images_per_s(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds else float("nan")

    def summary(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k != "latencies_s"},
            "errors": self.errors[:5],
            "n_errors": len(self.errors),
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "images_per_s": self.images_per_s,
        }


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generate_args(i: int, steps: int, candidates: int) -> tuple:
    """/generate's inputs: prompt, steps, guidance, seed, random seed, scheduler, snap, candidates, overlay."""
    return (PROMPTS[i % len(PROMPTS)], steps, 4.0, i, False, "euler-ancestral", 0.5, candidates, False)


def run_visitors(
    url: str, visitors: int, generations: int, steps: int = 30, candidates: int = 4, max_tries: int = 60
) -> LoadResult:
    """`visitors` clients at once, each making `generations` generations one after another."""
    from gradio_client import Client
    from gradio_client.utils import QueueError

    result = LoadResult(visitors, generations)
    lock = threading.Lock()

    def visitor(v: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=False)
        except Exception as e:  # noqa: BLE001 - every failure is a result here
            with lock:
                result.errors.append(f"connect: {e}")
            return
        for g in range(generations):
            for _ in range(max_tries):
                t = time.perf_counter()
                try:
                    client.predict(*generate_args(v * generations + g, steps, candidates), api_name="/generate")
                    with lock:
                        result.latencies_s.append(time.perf_counter() - t)
                    break
                except QueueError:
                    with lock:
                        result.refusals += 1
                    time.sleep(1.0)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        result.errors.append(f"{type(e).__name__}: {e}")
                    break
        client.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=visitor, args=(v,)) for v in range(visitors)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    result.seconds = time.perf_counter() - t0
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict, app_dir: Path = ROOT) -> tuple[subprocess.Popen, str, float]:
    """`python app.py` (of `app_dir`: another checkout, to compare) on a free loopback port: (process, url,
    seconds until the page was served)."""
    port = free_port()
    env = {**os.environ, **env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)


def _script_worker(conn, steps: int, candidates: int, threads: int | None = None) -> None:
    """A process of its own that times `pipe(...)` whenever asked: no gradio client shares its CPU or GIL.
    `threads`: torch's intra-op threads (None: torch's default, what a script gets)."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    from mmgen.app.compute import native_bf16
    from mmgen.pipeline import MMGenPipeline
    from mmgen.settings import SamplingSettings
    from mmgen.tokens import default_model

    pipe = MMGenPipeline.from_pretrained(default_model())
    bf16 = os.environ.get("MMGEN_BF16", "auto")
    if bf16 == "1" or (bf16 == "auto" and native_bf16()):
        pipe.set_autocast(torch.bfloat16)  # as app.py does
    pipe.set_progress_bar_config(disable=True)
    s = SamplingSettings(PROMPTS[0], steps, 4.0, seed=0, num_candidates=candidates, scheduler="euler-ancestral")
    s = s.checked()
    while conn.recv():
        t, c = time.perf_counter(), time.process_time()
        pipe.with_scheduler(s.scheduler)(**s.pipeline_kwargs(), generator=s.generator())
        conn.send((time.perf_counter() - t, time.process_time() - c))


def in_app_vs_script(
    apps: dict[str, tuple[str, int]],
    repeats: int,
    steps: int = 30,
    candidates: int = 4,
    scripts: dict[str, int | None] | None = None,
) -> dict:
    """One visitor's generation on each idle server (`apps`: name -> (url, pid)) and the same `pipe(...)` call
    in processes of their own (`scripts`: name -> torch threads, None for torch's default), timed in turn so
    that load drifts hit all alike: medians of wall seconds and of CPU seconds (all threads of the server or the
    script: what a generation costs a 2-vCPU Space), and each app's ratios to the first script's."""
    import multiprocessing as mp

    from gradio_client import Client

    spawn = mp.get_context("spawn")
    workers = {}
    for name, threads in (scripts or {"script": None}).items():
        parent, child = spawn.Pipe()
        process = spawn.Process(target=_script_worker, args=(child, steps, candidates, threads), daemon=True)
        process.start()
        workers[name] = (parent, process)
    clients = {name: (Client(url, verbose=False, download_files=False), pid) for name, (url, pid) in apps.items()}
    args = generate_args(0, steps, candidates)

    def script(conn) -> tuple[float, float]:
        conn.send(True)
        return conn.recv()

    def in_app(client, pid) -> tuple[float, float]:
        t, c = time.perf_counter(), cpu_s(pid)
        client.predict(*args, api_name="/generate")
        return time.perf_counter() - t, cpu_s(pid) - c

    timers = {name: (lambda c=conn: script(c)) for name, (conn, _) in workers.items()}
    timers |= {name: (lambda c=c, p=p: in_app(c, p)) for name, (c, p) in clients.items()}
    times = {name: [] for name in timers}
    for fn in timers.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in timers.items():
            times[name].append(fn())
    for conn, process in workers.values():
        conn.send(False)
        process.join()
    for client, _ in clients.values():
        client.close()
    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    base = next(iter(workers))
    report = {**{f"{n}_s": wall[n] for n in workers}, **{f"{n}_cpu_s": cpu[n] for n in workers}}
    for name in clients:
        report |= {f"{name}_s": wall[name], f"{name}_ratio": wall[name] / wall[base]}
        report |= {f"{name}_cpu_s": cpu[name], f"{name}_cpu_ratio": cpu[name] / cpu[base]}
    return {**report, "times": times}


def in_browser(url: str, pid: int, generations: int = 5, settle_s: float = 1.5) -> dict:
    """One visitor in Chromium generating `generations` times (after a warm-up), each with a prompt of its own:
    medians of the wall seconds from the click to the image and of the server's CPU seconds per generation,
    counted until `settle_s` after the image (the events a finished run sets off) less the idle server's."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url)
        page.locator("#generate").wait_for()
        c = cpu_s(pid)
        time.sleep(2.0)
        idle_per_s = (cpu_s(pid) - c) / 2.0
        for i in range(generations + 1):
            page.locator("#prompt textarea").fill(PROMPTS[i % len(PROMPTS)])
            page.locator("#seed input").fill(str(i))
            t, c = time.perf_counter(), cpu_s(pid)
            page.locator("#generate").click()
            page.locator("#generate-info").get_by_text(f"seed {i} ").wait_for(timeout=120_000)
            wall = time.perf_counter() - t
            time.sleep(settle_s)
            times.append((wall, cpu_s(pid) - c - idle_per_s * (time.perf_counter() - t)))
        browser.close()
    times = times[1:]  # the first one is a warm-up
    return {"wall_s": statistics.median(w for w, _ in times), "cpu_s": statistics.median(c for _, c in times)}


def main(args) -> dict:
    env = {"MMGEN_SESSION_MINUTES": str(args.expire_s / 60)} if args.expire_s else {}
    proc, url, ready_s = start_app(env, Path(args.app_dir))
    try:
        from gradio_client import Client

        t = time.perf_counter()
        # The page is up before the model: this first call waits for it (longer than httpx's default 5 s).
        first = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})
        first.predict(*generate_args(0, 30, 4), api_name="/generate")
        report = {"cold_start": {"page_s": ready_s, "first_image_s": ready_s + time.perf_counter() - t}}
        scripts = {"script": None, "script_1_thread": 1}  # torch's default threads (the app's too), and one
        report["in_app_vs_script"] = in_app_vs_script({"in_app": (url, proc.pid)}, args.repeats, scripts=scripts)
        try:
            report["in_browser"] = in_browser(url, proc.pid)
        except Exception as e:  # noqa: BLE001 - no Chromium or Playwright here: the rest still runs
            print(f"browser visitor skipped: {e}", file=sys.stderr)
        report["rss_mb"] = {"before": rss_mb(proc.pid)}
        for round_ in (1, 2):
            load = run_visitors(url, args.visitors, args.generations, args.steps, args.candidates)
            report[f"load_round_{round_}"] = load.summary()
            report["rss_mb"][f"after_round_{round_}"] = rss_mb(proc.pid)
        if args.expire_s:
            time.sleep(args.expire_s + 3)
            report["rss_mb"]["after_expiry"] = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    return report


def table(report: dict) -> str:
    c, r, rss = report["cold_start"], report["in_app_vs_script"], report["rss_mb"]
    load = report["load_round_1"]
    rows = [
        ("cold start: page served / first image", f"{c['page_s']:.1f} s / {c['first_image_s']:.1f} s"),
        (
            "one generation, defaults: in-app vs `pipe(...)`, wall (median, in turn)",
            f"{r['in_app_s']:.2f} s vs {r['script_s']:.2f} s: {r['in_app_ratio']:.2f}x",
        ),
        (
            "the same, CPU seconds (server process vs script process)",
            f"{r['in_app_cpu_s']:.2f} s vs {r['script_cpu_s']:.2f} s: {r['in_app_cpu_ratio']:.2f}x",
        ),
        *(
            [
                (
                    "a visitor in Chromium: click to image / server CPU per generation (vs the script's CPU)",
                    f"{b['wall_s']:.2f} s / {b['cpu_s']:.2f} s: {b['cpu_s'] / r['script_cpu_s']:.2f}x",
                )
            ]
            if (b := report.get("in_browser"))
            else []
        ),
        (
            "`pipe(...)` with one torch thread, wall / CPU",
            f"{r['script_1_thread_s']:.2f} s / {r['script_1_thread_cpu_s']:.2f} s",
        ),
        (
            f"{load['visitors']} visitors x {load['generations']} generations: errors / queue-full refusals",
            f"{load['n_errors']} / {load['refusals']}",
        ),
        ("latency p50 / p95 (queue wait included)", f"{load['p50_s']:.1f} s / {load['p95_s']:.1f} s"),
        ("throughput", f"{load['images_per_s']:.2f} images/s"),
        (
            "server RSS: before / after round 1 / after round 2"
            + (" / sessions expired" if "after_expiry" in rss else ""),
            " / ".join(f"{v:.0f} MB" for v in rss.values()),
        ),
    ]
    return "\n".join(["| what | figure |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="in-app vs script pairs")
    parser.add_argument("--expire-s", type=float, default=0, help="session lifetime to set and wait out (0: skip)")
    parser.add_argument("--app-dir", default=str(ROOT), help="the checkout whose app.py to serve (to compare)")
    parser.add_argument("--out", help="write the report as JSON here")
    a = parser.parse_args()
    if a.visitors > 100 or a.generations > 20:
        parser.error("at most 100 visitors x 20 generations: this is a bounded local benchmark")
    result = main(a)
    print(json.dumps(result, indent=2))
    print(table(result))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
