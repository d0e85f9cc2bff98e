"""A stand-in metrics target for dashboard tests: feeds agent.metrics.Metrics with realistic values and serves
it.

Never used by the service.
Usage: python -m tests.ops.metrics_harness --port N [--cameras cam1,cam2] [--token T]
Prints `READY http://127.0.0.1:N/metrics` once it listens, then keeps feeding until killed.
The values mimic two embedded-backend cameras at 2 sampled fps: ~30 ms encode per frame, ~1 ms SCC,
196 tokens per frame of which a few become new memory entries, a novelty rule that fires now and then,
and a question every second.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.metrics import CameraSnapshot, Metrics, ServiceSnapshot

TOKENS_PER_FRAME = 196


@dataclass
class FakeCamera:
    """Counters as a streamer Source and a TokenMemory would keep them."""

    name: str
    decoded: int = 0
    sampled: int = 0
    drops: dict[str, int] = field(default_factory=lambda: {"consumer_behind": 0, "decode_error": 0})
    tokens_in: int = 0
    entries: int = 0
    evicted: int = 0

    def snapshot(self) -> CameraSnapshot:
        return CameraSnapshot(
            camera=self.name,
            up=True,
            frames_decoded=self.decoded,
            frames_sampled=self.sampled,
            drops=dict(self.drops),
            reconnects=1,
            input_fps=25.0,
            decode_seconds=self.decoded * 0.004,
            last_frame_wall_time=time.time(),
            memory_entries=self.entries,
            memory_tokens_in=self.tokens_in,
            memory_tokens_evicted=self.evicted * 20,
            memory_evicted=self.evicted,
            memory_consolidations=self.evicted // 3,
        )


def feed(metrics: Metrics, cameras: list[FakeCamera], lock: threading.Lock, rng: random.Random) -> None:
    """One 0.1 s tick: 2.5 decoded frames per camera, one sampled and encoded every few ticks, an answer now
    and then."""
    with lock:
        for cam in cameras:
            cam.decoded += 3
            cam.drops["consumer_behind"] += rng.random() < 0.3
            if rng.random() < 0.5:
                continue
            cam.sampled += 1
            metrics.encoded(cam.name, 1, rng.uniform(0.02, 0.06))
            kept = rng.randint(0, 12)
            cam.tokens_in += TOKENS_PER_FRAME
            cam.entries = min(cam.entries + kept, 400)
            cam.evicted += kept if cam.entries >= 400 else 0
            metrics.memory_updated(
                cam.name,
                novelty=rng.betavariate(1.5, 6),
                tokens_kept=kept,
                scc_seconds=rng.uniform(0.0004, 0.003),
                update_seconds=rng.uniform(0.001, 0.006),
            )
            if rng.random() < 0.2:
                metrics.alert(cam.name, "novelty", rng.choice(("sent", "sent", "queued")))
            if rng.random() < 0.2:
                metrics.answered(
                    cam.name,
                    rng.uniform(0.05, 2.0),
                    rng.randint(200, 900),
                    rng.randint(50, 400),
                    ok=rng.random() < 0.95,
                )


def serve(port: int, metrics: Metrics, token: str | None) -> ThreadingHTTPServer:
    """Serve `metrics.render()` at /metrics on 127.0.0.1:port in a daemon thread, behind a bearer token if
    given."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's method name
            if self.path != "/metrics":
                self.send_error(404)
                return
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                self.send_error(401)
                return
            body, content_type = metrics.render()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # silence per-request logs
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cameras", default="lobby,dock")
    parser.add_argument(
        "--token", help="bearer token /metrics requires, as the service does with SCISSOR_API_TOKEN"
    )
    args = parser.parse_args(argv)
    metrics, lock, rng = Metrics(), threading.Lock(), random.Random(7)
    cameras = [FakeCamera(name) for name in args.cameras.split(",")]
    metrics.set_backend("embedded", "cpu", 1280)
    for cam in cameras:
        metrics.watch_camera(cam.name)
        metrics.watch_rule(cam.name, "novelty")

    def snapshot() -> ServiceSnapshot:
        with lock:
            return ServiceSnapshot(
                cameras=[c.snapshot() for c in cameras],
                mqtt_connected=True,
                redis_connected=True,
                outbox_length=rng.randint(0, 2),
                mqtt_sent=sum(c.sampled for c in cameras) // 5,
                mqtt_reconnects=1,
            )

    metrics.set_snapshot_source(snapshot)
    serve(args.port, metrics, args.token)
    print(f"READY http://127.0.0.1:{args.port}/metrics", flush=True)
    while True:
        feed(metrics, cameras, lock, rng)
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
