"""What the in-run runtime costs a training loop. Prints, never asserts.

1. `run.log` overhead: the `lm` recipe's own training step (one CPU thread), timed with and
   without `run.log(...)` in rotation (plain, plain again as an A/A noise control, logged),
   the runtime reporting over HTTP to a stand-in API in another process; the target is < 1%
   on the median step time. Also the cost of one `log()` call by itself.
2. Checkpoint throughput for a ~200 MB state: `checkpoints.save` (serialise, sha256, fsync,
   COMMIT, rename) and `load` (verify every sha256, `torch.load(weights_only=True)`) to a local
   folder and, when moto is installed, to S3 (moto's server mode on 127.0.0.1, through boto3).

    python -m bench.runtime_bench              # ~1-2 minutes
    python -m bench.runtime_bench --quick      # a 20 MB state and fewer steps
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import httpx  # noqa: E402
import torch  # noqa: E402

from trainport.recipes.lm.config import LMConfig  # noqa: E402
from trainport.recipes.lm.data import Corpus  # noqa: E402
from trainport.recipes.lm.distributed import Placement  # noqa: E402
from trainport.recipes.lm.train import Trainer  # noqa: E402
from trainport.runtime import Checkpoints, Run, RunEnvironment  # noqa: E402
from trainport.runtime.stores import CheckpointStore, LocalStore, S3Store  # noqa: E402

STUB_API = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args):
            pass
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(204 if self.path.endswith("/heartbeat") else 202)
            self.send_header("content-length", "0")
            self.end_headers()
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)
MODEL = LMConfig(
    d_model=128, n_layers=4, n_heads=4, context=128, batch=8, steps=10**6, warmup=10,
    eval_every=0, checkpoint_every=0, sample_tokens=0, device="cpu", threads=1,
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def stub_api() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", STUB_API, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def online_run(api_url: str, scratch: Path) -> Run:
    environment = RunEnvironment(
        run_id="run_bench",
        attempt=1,
        api_url=api_url,
        token="tpr_bench",
        checkpoint_uri=scratch.as_uri() + "/",
        cache_dir=scratch / "cache",
    )
    return Run(environment, handle_sigterm=False)


def text_corpus(config: LMConfig) -> Corpus:
    source = "".join(
        sorted(Path(json.__file__).parent.glob("*.py"))[0].read_text() for _ in range(50)
    )
    return Corpus.from_bytes(source.encode(), config.context, config.eval_fraction)


def timed_step(trainer: Trainer, run: Run, *, log: bool) -> float:
    began = time.perf_counter()
    loss, norm = trainer.train_step()
    value = float(loss.item())  # both variants read the loss, as any loop that prints does
    if log:
        run.log(step=trainer.step, loss=value, grad_norm=float(norm), lr=1e-3, tokens_per_s=1.0)
    return time.perf_counter() - began


def log_overhead(steps: int) -> dict[str, Any]:
    """Steps alternate with and without `run.log`, so load on a shared machine hits both."""
    torch.set_num_threads(MODEL.threads)
    with stub_api() as url, tempfile.TemporaryDirectory() as scratch:
        run = online_run(url, Path(scratch))
        trainer = Trainer(MODEL, run, Placement.start(MODEL), text_corpus(MODEL))
        for _ in range(10):  # warm-up
            timed_step(trainer, run, log=True)
        plain: list[float] = []
        control: list[float] = []  # a second plain series: the noise floor (A/A)
        logged: list[float] = []
        for _ in range(steps):
            plain.append(timed_step(trainer, run, log=False))
            control.append(timed_step(trainer, run, log=False))
            logged.append(timed_step(trainer, run, log=True))
        run.flush(timeout=10)
        calls = 200_000
        began = time.perf_counter()
        for step in range(calls):
            run.log(step=step, loss=1.0, lr=1e-3)
        per_call_us = (time.perf_counter() - began) / calls * 1e6
        run.close(timeout=30)
    assert run.reporter is not None
    plain_ms, logged_ms = statistics.median(plain) * 1e3, statistics.median(logged) * 1e3
    control_ms = statistics.median(control) * 1e3
    return {
        "step_ms_without_log": round(plain_ms, 3),
        "step_ms_with_log": round(logged_ms, 3),
        "overhead_pct_median": round(100 * (logged_ms - plain_ms) / plain_ms, 2),
        "noise_pct_a_a": round(100 * (control_ms - plain_ms) / plain_ms, 2),
        "log_call_us": round(per_call_us, 2),
        "log_call_pct_of_step": round(100 * per_call_us / 1e3 / plain_ms, 3),
        "points_delivered": run.reporter.sent_points,
        "points_dropped": run.reporter.dropped_points,
        "steps_each": len(plain),
    }


def big_state(megabytes: int) -> dict[str, Any]:
    layers = max(1, megabytes // 4)  # 1024 x 1024 float32 = 4 MiB-ish each
    generator = torch.Generator().manual_seed(0)
    model = {
        f"layer{i}.weight": torch.randn(1024, 1024, generator=generator) for i in range(layers)
    }
    return {"model": model, "step": 1000, "rng": torch.get_rng_state()}


def throughput(store: CheckpointStore, state: dict[str, Any], rounds: int) -> dict[str, Any]:
    checkpoints = Checkpoints(store, keep_last=1)
    size = 0
    saves, loads = [], []
    for round_ in range(rounds):
        began = time.perf_counter()
        saved = checkpoints.save(state, step=round_ + 1)
        saves.append(time.perf_counter() - began)
        assert saved is not None
        size = saved.size
        began = time.perf_counter()
        latest = checkpoints.latest()
        assert latest is not None
        latest.load()
        loads.append(time.perf_counter() - began)
    megabytes = size / 1e6
    return {
        "state_mb": round(megabytes, 1),
        "save_s": round(min(saves), 3),
        "save_mb_per_s": round(megabytes / min(saves)),
        "load_s": round(min(loads), 3),
        "load_mb_per_s": round(megabytes / min(loads)),
    }


@contextmanager
def moto_s3() -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").disabled = True  # one access-log line per request otherwise
    try:
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="bench")
        yield client
    finally:
        server.stop()


def checkpoint_throughput(megabytes: int, rounds: int) -> dict[str, Any]:
    state = big_state(megabytes)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        results["local"] = throughput(LocalStore(Path(scratch) / "ckpt"), state, rounds)
        try:
            with moto_s3() as client:
                store = S3Store("s3://bench/run/", Path(scratch) / "cache", client=client)
                results["s3_moto"] = throughput(store, state, rounds)
        except ImportError as missing:
            results["s3_moto"] = f"skipped: {missing}"
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 20 MB state, fewer steps")
    parser.add_argument("--steps", type=int, help="steps of each kind (default 200, quick 50)")
    parser.add_argument("--state-mb", type=int, help="checkpoint state (default 200, quick 20)")
    args = parser.parse_args(argv)
    steps = args.steps or (50 if args.quick else 200)
    megabytes = args.state_mb or (20 if args.quick else 200)
    print(json.dumps({"log_overhead": log_overhead(steps)}), flush=True)
    report = {"checkpoints": checkpoint_throughput(megabytes, 1 if args.quick else 2)}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
