"""Tokenizer speed: encode + decode latency on this machine, printed as a table and written as JSON.

    python benchmarks/bench_tokenizer.py [--model assets/mmgen-base] [--repeats 20] [--out benchmarks/tokenizer.json]

Medians over `--repeats` timed runs after warm-up, all variants measured in the same process, so the ratios
between rows are side by side. Variants: default memory format, and channels-last (often faster for convs
on CPU). Latency is for one image (batch 1), the app's case.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from mmgen.tokens import default_model, load_vqvae


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(args):
    vq = load_vqvae(args.model)
    rows = []
    for size in (64, 256):
        x = torch.rand(1, 3, size, size) * 2 - 1
        for variant in ("default", "channels_last"):
            fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format
            model, inp = vq.to(memory_format=fmt), x.contiguous(memory_format=fmt)

            @torch.inference_mode()
            def encode_decode(model=model, inp=inp):
                return model.decode(model.encode(inp).latents)

            @torch.inference_mode()
            def encode_only(model=model, inp=inp):
                return model.encode(inp)

            rows.append({"size": size, "variant": variant, "encode_ms": median_ms(encode_only, args.repeats),
                         "encode_decode_ms": median_ms(encode_decode, args.repeats)})  # fmt: skip
    vq.to(memory_format=torch.contiguous_format)

    base = {r["size"]: r["encode_decode_ms"] for r in rows if r["variant"] == "default"}
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")
    print(f"{'size':>8} {'variant':<14} {'encode ms':>10} {'enc+dec ms':>11} {'vs default':>11}")
    for r in rows:
        r["speedup_vs_default"] = base[r["size"]] / r["encode_decode_ms"]
        print(f"{r['size']:>5}px {r['variant']:<14} {r['encode_ms']:>10.1f} {r['encode_decode_ms']:>11.1f} "
              f"{r['speedup_vs_default']:>10.2f}x")  # fmt: skip
    if args.out:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats}
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=default_model())
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="benchmarks/tokenizer.json")
    main(p.parse_args())
