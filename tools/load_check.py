"""Load check (not a test): start the API server, drive N concurrent clients for a bounded time.

    python tools/load_check.py --clients 8 --seconds 30            # tiny random model
    python tools/load_check.py --ckpt /path/model.safetensors --steps 20 --size 512
    python tools/load_check.py --workers 2 --clients 4   # 1 in-process worker, then 1 and 2 Ray workers

Prints jobs completed, errors, and queue wait times (p50/p95/max) as the server measured
them (`queue_seconds` in each response's info), plus each client's share of the jobs, and lost
images: every image a response reported must be on disk, whole, with that image's infotext.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from webui.api import register_api  # noqa: E402
from webui.flags import parse_flags  # noqa: E402
from webui.state import SharedState  # noqa: E402


def start_server(data_dir: Path, ckpt: str | None, workers: int | None = None) -> tuple[uvicorn.Server, str, SharedState]:
    argv = ["--data-dir", str(data_dir), "--use-cpu", "all", "--precision", "full"]
    argv += ["--workers", str(workers)] if workers else []  # Ray workers (webui/workers) instead of in-process
    if ckpt:
        argv += ["--ckpt", ckpt]
    else:  # a tiny random-weight model, written as a diffusers folder
        from checkpoint_files import write_diffusers_folder
        from tiny_models import make_tiny_model
        write_diffusers_folder(make_tiny_model("sd1"), data_dir / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(argv))
    app = FastAPI()
    register_api(app, state)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}", state


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="no new requests after this")
    parser.add_argument("--ckpt", default=None, help="checkpoint file or folder (default: a tiny random model)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None,
                        help="compare: the in-process worker, then 1 and N Ray workers on the CPU (needs ray)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.workers:
        return check(args, None)
    failed = 0
    for workers in sorted({None, 1, args.workers}, key=lambda n: n or 0):
        print(f"== {'in-process worker' if workers is None else f'{workers} Ray worker(s)'}", flush=True)
        failed |= check(args, workers)
    return failed


def check(args, workers: int | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server, url, state = start_server(Path(tmp), args.ckpt, workers)
        body = {"prompt": "a lighthouse at dusk", "steps": args.steps, "width": args.size, "height": args.size}
        warm = [threading.Thread(target=httpx.post, args=(f"{url}/sdapi/v1/txt2img",),  # loads the model(s):
                                 kwargs={"json": body, "timeout": 600, "headers": {"X-Client-Id": f"warm-{n}"}})
                for n in range(workers or 1)]  # one job per worker at once, so each worker takes one
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join()
        stop_at = time.monotonic() + args.seconds
        lock = threading.Lock()
        done: dict[int, int] = {}
        errors: list[str] = []
        waits: list[float] = []
        latencies: list[float] = []
        reported: list[str] = []  # the infotext of every image a response reported

        def client(number: int) -> None:
            with httpx.Client(base_url=url, headers={"X-Client-Id": f"load-{number}"}, timeout=600) as http:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    try:
                        r = http.post("/sdapi/v1/txt2img", json=body)
                        ok = r.status_code == 200
                        info = json.loads(r.json()["info"]) if ok else None
                    except (httpx.HTTPError, ValueError, KeyError) as error:
                        ok, r, info = False, error, None
                    with lock:
                        if ok:
                            done[number] = done.get(number, 0) + 1
                            waits.append(info["queue_seconds"])
                            reported.extend(info["infotexts"])
                            latencies.append(time.monotonic() - started)
                        else:
                            errors.append(str(getattr(r, "text", r))[:200])

        began = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        server.should_exit = True
        jobs_per_worker = {w["id"]: w["jobs_done"] for w in state.queue.workers_info()}
        state.queue.close_workers()
        lost, broken = lost_images(Path(tmp) / "outputs", reported)

    total = sum(done.values())
    print(f"clients {args.clients}, {elapsed:.1f}s, {args.steps} steps at {args.size}x{args.size}")
    print(f"jobs completed {total} ({total / elapsed:.2f}/s), errors {len(errors)}")
    print(f"queue wait s: p50 {percentile(waits, 0.5):.3f}  p95 {percentile(waits, 0.95):.3f}  max {max(waits, default=0):.3f}")
    print(f"request latency s: p50 {percentile(latencies, 0.5):.3f}  p95 {percentile(latencies, 0.95):.3f}  "
          f"mean {statistics.fmean(latencies) if latencies else 0:.3f}")
    print("jobs per client:", " ".join(str(done.get(n, 0)) for n in range(args.clients)))
    print("jobs per worker (warm-up included):", " ".join(f"{k} {v}" for k, v in jobs_per_worker.items()))
    print(f"images reported {len(reported)}, lost {lost} (not on disk with their infotext), "
          f"unreadable files {broken}")
    for error in errors[:5]:
        print("error:", error)
    return 1 if errors or lost or broken else 0


def lost_images(outputs: Path, reported: list[str]) -> tuple[int, int]:
    """(reported images with no saved file carrying their infotext, saved files that cannot be read)."""
    from collections import Counter

    from webui.generation.images import read_infotext

    saved, broken = Counter(), 0
    for path in outputs.rglob("*.png"):
        try:
            saved[read_infotext(path)] += 1
        except OSError:
            broken += 1
    missing = Counter(reported) - saved
    return sum(missing.values()), broken


if __name__ == "__main__":
    sys.exit(main())
