"""Composition root: Service.start()/stop() name every subsystem in order.

Cameras, rules and questions go through here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from agent import persist
from agent.alerts import AlertRouter
from agent.answer import QuestionResult, TimeRange, ask, resolve_range
from agent.batcher import EncodeBatcher
from agent.camera_options import split_options
from agent.errors import CameraExists, InvalidRequest, KeyframeGone, TooBusy, UnknownCamera, UnknownRule
from agent.events import EventBus
from agent.keyframes import Keyframe, KeyframeStore
from agent.metrics import CameraSnapshot, Metrics, ServiceSnapshot
from agent.models import Backend, load_backend
from agent.mqtt import make_publisher
from agent.records import CameraSpec, CameraStatus, Event, Rule, RuleSpec, Turn
from agent.settings import Settings
from agent.state_sync import ResilientStore
from agent.watcher import CameraRuntime, CameraWatcher
from compress.memory import MemoryUpdate, TokenMemory
from streamer import Frame, InvalidCameraURL, validate_url

log = logging.getLogger(__name__)

STATE_NAMES = {"connecting": "starting", "up": "online", "down": "offline", "stopped": "stopped"}


class Service:
    """The running agent: state, models, event bus, MQTT, per-camera watchers, rules, questions."""

    def __init__(self, settings: Settings, *, backend: Backend | None = None, metrics: Metrics | None = None):
        self.settings = settings
        self.backend = backend
        self.metrics = metrics or Metrics()
        self.cameras: dict[str, CameraRuntime] = {}
        self._watchers: dict[str, CameraWatcher] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._answer_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="scissor-answer", initializer=_lower_thread_priority
        )
        self.started = False
        self._pending_questions = 0

    # ----------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start every subsystem in dependency order, then restore cameras, rules and memory from state."""
        self.store = ResilientStore.from_settings(self.settings)
        await self.store.start()
        if self.backend is None:
            self.backend = await asyncio.to_thread(
                load_backend, self.settings.backend, device=self.settings.device
            )
        self.metrics.set_backend(self.backend.name, self.settings.device, self.backend.token_dim)
        self.bus = EventBus()
        self.alerts = AlertRouter(self, self.backend)
        self.publisher = make_publisher(
            self.settings,
            store=self.store,
            bus=self.bus,
            on_delivered=self.alerts.delivered,
            on_dropped=self.alerts.dropped,
        )
        await self.publisher.start()
        self.batcher = EncodeBatcher(self.backend.encoder.encode)
        await self.batcher.start()
        self.metrics.set_snapshot_source(self._snapshot)
        await self._restore()
        if not self.store.healthy:
            self._tasks.append(asyncio.create_task(self._restore_when_reachable(), name="state-restore"))
        self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="memory-snapshots"))
        self.started = True
        log.info(
            "service started: backend %s, %d camera(s), %d rule(s)",
            self.backend.name,
            len(self.cameras),
            len(self.alerts.rules),
        )

    async def stop(self) -> None:
        """Stop everything `start` started, in reverse order; memory is saved first."""
        if not self.started:
            return
        self.started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.save_all_memory()
        await asyncio.gather(*(w.stop() for w in self._watchers.values()), return_exceptions=True)
        await self.alerts.stop()
        await self.batcher.stop()
        self.metrics.set_snapshot_source(None)
        await self.publisher.stop()
        await self.store.close()
        self._answer_pool.shutdown(wait=False, cancel_futures=True)

    async def _restore_when_reachable(self) -> None:
        # Started while Redis was unreachable: once it answers (and is loaded into RAM),
        # restore what it holds.
        while not self.store.healthy:
            await asyncio.sleep(self.settings.state.sync_retry_s)
        log.info("state store reachable: restoring cameras and rules saved by an earlier run")
        await self._restore()

    async def _restore(self) -> None:
        """Start every stored camera and rule not already running (RAM changes made meanwhile win)."""
        known = set(self.alerts.rules)
        for rule in await self.store.rules():
            if rule.id not in known:
                self.alerts.load(rule)
        self.alerts.load_states({k: v for k, v in (await self.store.rule_states()).items() if k not in known})
        for spec in await self.store.cameras():
            if spec.id in self.cameras:
                continue
            blob = await self.store.snapshot(spec.id)
            try:
                self._start_camera(spec, restored=persist.decode(blob) if blob else None)
            except (InvalidRequest, InvalidCameraURL, ValueError) as exc:
                log.error("camera %s not restored: %s", spec.id, exc)

    # ----------------------------------------------------------------------------------------- cameras
    def camera_ids(self) -> list[str]:
        return sorted(self.cameras)

    def camera(self, camera_id: str) -> CameraRuntime:
        try:
            return self.cameras[camera_id]
        except KeyError:
            raise UnknownCamera(camera_id) from None

    def _new_memory(self, options: dict[str, Any]) -> TokenMemory:
        assert self.backend is not None
        defaults = self.settings.camera
        tau = options.get(
            "tau", defaults.tau if "tau" in defaults.model_fields_set else self.backend.default_tau
        )
        try:
            return TokenMemory(
                self.backend.token_dim,
                tau=tau,
                capacity=options.get("capacity", defaults.capacity_entries),
                window_s=options.get("window_s", defaults.window_s),
            )
        except ValueError as exc:
            raise InvalidRequest("options", str(exc)) from None

    def _start_camera(self, spec: CameraSpec, restored: persist.Restored | None = None) -> CameraRuntime:
        assert self.backend is not None
        try:
            validate_url(spec.url, allow_files=self.settings.allow_file_urls)
        except ValueError as exc:  # InvalidCameraURL, or urlsplit's own ValueError ("Invalid IPv6 URL")
            raise InvalidRequest("url", str(exc)) from None
        allow_files = self.settings.allow_file_urls
        memory_options, source_options = split_options(dict(spec.options), allow_files=allow_files)
        memory = restored.memory if restored else self._new_memory(memory_options)
        camera = CameraRuntime(
            id=spec.id,
            url=spec.url,
            fps=spec.fps or self.settings.camera.fps,
            options={**source_options, "allow_files": self.settings.allow_file_urls},
            added_at=restored.added_at if restored else time.time(),
            memory=memory,
        )
        defaults = self.settings.camera
        camera.keyframes = KeyframeStore(
            budget_bytes=defaults.keyframe_budget_bytes,
            max_frames=defaults.keyframes_kept,
            max_side=defaults.keyframe_max_side,
        )
        watcher = CameraWatcher(
            camera,
            batcher=self.batcher,
            frame_size=self.backend.frame_size,
            on_update=self._on_update,
            on_status=self._on_status,
        )
        self.cameras[spec.id], self._watchers[spec.id] = camera, watcher
        self.metrics.watch_camera(spec.id)
        watcher.start()
        return camera

    async def add_camera(self, spec: CameraSpec) -> CameraStatus:
        """Validate and register a camera, persist it and start watching it."""
        if spec.id in self.cameras:
            raise CameraExists(spec.id)
        self._start_camera(spec)
        await self.store.put_camera(spec)
        await self.publisher.publish_event(
            Event(kind="camera_added", camera=spec.id, message=f"camera {spec.id} added")
        )
        return self.camera_status(spec.id)

    async def update_camera(self, camera_id: str, patch: dict[str, Any]) -> CameraStatus:
        """Restart a camera's ingest with new URL/fps/options; its memory and time base are kept."""
        camera = self.camera(camera_id)
        spec = CameraSpec.model_validate(
            {
                "id": camera_id,
                "url": camera.url,
                "fps": camera.fps,
                "options": {**self._spec_options(camera), **patch.get("options", {})},
                **{k: v for k, v in patch.items() if k != "options"},
            }
        )
        # Validate before touching the running camera.
        memory_options, _ = split_options(dict(spec.options), allow_files=self.settings.allow_file_urls)
        self._new_memory(memory_options)  # out-of-range memory options are a 422 here, not silently kept
        try:
            validate_url(spec.url, allow_files=self.settings.allow_file_urls)
        except ValueError as exc:  # InvalidCameraURL, or urlsplit's own ValueError ("Invalid IPv6 URL")
            raise InvalidRequest("url", str(exc)) from None
        await self._watchers.pop(camera_id).stop()
        del self.cameras[camera_id]
        self._start_camera(spec, restored=persist.Restored(camera.added_at, camera.memory))
        await self.store.put_camera(spec)
        return self.camera_status(camera_id)

    @staticmethod
    def _spec_options(camera: CameraRuntime) -> dict[str, Any]:
        return {k: v for k, v in camera.options.items() if k != "allow_files"}

    async def remove_camera(self, camera_id: str) -> None:
        """Stop a camera, forget it, its rules and its memory."""
        self.camera(camera_id)
        await self._watchers.pop(camera_id).stop()
        del self.cameras[camera_id]
        for rule in [r for r in self.alerts.rules.values() if r.camera_id == camera_id]:
            await self.remove_rule(rule.id)
        await self.store.delete_camera(camera_id)
        await self.publisher.clear_status(camera_id)
        self.metrics.forget_camera(camera_id)
        await self.publisher.publish_event(
            Event(kind="camera_removed", camera=camera_id, message=f"camera {camera_id} removed")
        )

    def camera_status(self, camera_id: str) -> CameraStatus:
        camera = self.camera(camera_id)
        stats = camera.source.stats if camera.source is not None else None
        with camera.memory_lock:
            memory = camera.memory.summary()
        kept = max(1, len(camera.memory))
        return CameraStatus(
            id=camera.id,
            url=camera.redacted_url,
            state=STATE_NAMES.get(camera.state, "offline"),
            reason=camera.reason or None,
            fps_in=float(getattr(stats, "input_fps", 0.0) or 0.0),
            fps_out=camera.fps_out(),
            frames_dropped=camera.frames_rejected
            + (int(sum(getattr(stats, "drops", {}).values())) if stats else 0),
            reconnects=int(getattr(stats, "reconnects", 0)) if stats else 0,
            memory_entries=len(camera.memory),
            compression_ratio=float(memory.get("tokens_in_total", 0) or 0) / kept
            if len(camera.memory)
            else 0.0,
        )

    async def _on_status(self, camera: CameraRuntime) -> None:
        status = self.camera_status(camera.id)
        kind = (
            "stream_up"
            if status.state == "online"
            else "stream_down"
            if status.state == "offline"
            else "status"
        )
        await self.publisher.publish_event(
            Event(
                kind=kind,
                camera=camera.id,
                data={"state": status.state, "reason": status.reason},
                message=f"{status.state}: {status.reason or ''}".strip(),
            )
        )
        await self.publisher.set_status(status)

    async def _on_update(
        self, camera: CameraRuntime, frame: Frame, update: MemoryUpdate, encode_s: float, update_s: float
    ) -> None:
        self.metrics.encoded(camera.id, 1, encode_s)
        self.metrics.memory_updated(
            camera.id,
            novelty=update.novelty,
            tokens_kept=len(update.new),
            scc_seconds=getattr(update, "scc_seconds", update_s),
            update_seconds=update_s,
        )
        await self.alerts.on_update(camera, frame, update)

    # ----------------------------------------------------------------------------------------- memory
    def memory_summary(self, camera_id: str, *, since_s: float | None, limit: int) -> dict[str, Any]:
        camera = self.camera(camera_id)
        since = None if since_s is None else max(0.0, camera.stream_seconds() - since_s)
        with camera.memory_lock:  # an update may be running in its worker thread
            tokens, entries = camera.memory.tokens(since, None)
            summary = camera.memory.summary()
        tokens, entries = tokens[-limit:], entries[-limit:]  # the newest entries, labelled row for row
        labels = self.alerts.top_labels(tokens, 3) if entries else []
        items = [
            {
                "id": e.id,
                "first_seen_s": e.first_seen,
                "last_seen_s": e.last_seen,
                "tokens": e.count,
                "frames": e.frames,
                "evidence_frames": list(e.evidence),
                "intervals": [list(span) for span in e.intervals],
                "interval_frames": list(e.interval_frames),
                "labels": labels[i] if labels else [],
            }
            for i, e in enumerate(entries)
        ]
        tokens_in = int(summary.get("tokens_in_total", 0) or 0)
        return {
            "camera": camera_id,
            "entries": len(camera.memory),
            "capacity": camera.memory.capacity,
            "window_s": camera.memory.window_s,
            "tokens_in_total": tokens_in,
            "compression_ratio": tokens_in / max(1, len(camera.memory)),
            "stats": dict(summary),
            "items": items,
        }

    def keyframe(self, camera_id: str, *, frame: int | None = None, t: float | None = None) -> Keyframe:
        """The kept keyframe of frame index `frame`, or taken at stream second `t`, or the newest one; never
        another moment's picture: KeyframeGone (404) when that frame is not kept."""
        if frame is not None and t is not None:
            raise InvalidRequest("frame", "give frame or t, not both")
        store = self.camera(camera_id).keyframes
        found = store.get(frame) if frame is not None else store.at(t) if t is not None else store.latest()
        if found is None:
            what = f"of frame {frame}" if frame is not None else f"at t={t}" if t is not None else "yet"
            raise KeyframeGone(camera_id, what)
        return found

    async def save_memory(self, camera_id: str) -> dict[str, Any]:
        camera = self.camera(camera_id)
        blob = await asyncio.to_thread(self._encode_memory, camera)  # MBs of tensors: off the event loop
        await self.store.put_snapshot(camera_id, blob)
        return {"camera": camera_id, "bytes": len(blob), "entries": len(camera.memory)}

    @staticmethod
    def _encode_memory(camera: CameraRuntime) -> bytes:
        with camera.memory_lock:
            return persist.encode(camera.added_at, camera.memory)

    async def save_all_memory(self) -> None:
        for camera_id in list(self.cameras):
            await self.save_memory(camera_id)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state.snapshot_interval_s)
            try:
                await self.save_all_memory()
            except Exception:  # crash guard: a failed snapshot must not stop the next one
                log.exception("memory snapshot failed")

    # ----------------------------------------------------------------------------------------- questions
    async def ask(self, camera_ids: list[str], body: Any) -> dict[str, Any]:
        """Answer `body.question` over the cameras' memories; sessions keep the turns."""
        if len(body.question) > self.settings.api.max_question_chars:
            raise InvalidRequest("question", f"longer than {self.settings.api.max_question_chars} characters")
        cameras = [self.camera(cid) for cid in camera_ids]
        ranges = [resolve_range(c, since_s=body.since_s, from_s=body.from_s, to_s=body.to_s) for c in cameras]
        limit = self.settings.api.max_pending_questions
        if self._pending_questions >= limit:  # admission control: answers must never starve ingest
            raise TooBusy(limit)
        self._pending_questions += 1
        try:
            return await self._ask(cameras, camera_ids, ranges, body)
        finally:
            self._pending_questions -= 1

    async def _ask(
        self, cameras: list[CameraRuntime], camera_ids: list[str], ranges: list[TimeRange], body: Any
    ) -> dict[str, Any]:
        history = await self.store.turns(body.session_id) if body.session_id else []
        question = _with_history(body.question, history)
        try:
            result = await self.answer(
                cameras,
                question,
                ranges,
                max_memory_tokens=body.max_memory_tokens,
                max_new_tokens=body.max_new_tokens,
            )
        except Exception:
            for c in cameras:
                self.metrics.answered(c.id, 0.0, 0, 0, ok=False)
            raise
        evidence = [self._evidence(e) for e in result.evidence]
        if body.session_id:
            await self.store.append_turn(
                body.session_id,
                Turn(question=body.question, answer=result.answer, cameras=camera_ids, evidence=evidence),
                self.settings.state.session_ttl_s,
            )
        return {
            "answer": result.answer,
            "evidence": evidence,
            "tokens_used": result.tokens_used,
            "raw_tokens_in_range": result.raw_tokens_in_range,
            "prefill_tokens": result.prefill_tokens,
            "latency_s": result.latency_s,
            "session_id": body.session_id,
            "cameras": camera_ids,
        }

    async def answer(
        self,
        cameras: list[CameraRuntime],
        question: str,
        ranges: list[TimeRange],
        *,
        max_memory_tokens: int | None = None,
        max_new_tokens: int = 64,
    ) -> QuestionResult:
        assert self.backend is not None
        result = await ask(
            cameras,
            question,
            ranges,
            answerer=self.backend.answerer,
            executor=self._answer_pool,
            timeout_s=self.settings.api.answer_timeout_s,
            max_memory_tokens=max_memory_tokens,
            max_new_tokens=max_new_tokens,
        )
        for c in cameras:
            self.metrics.answered(c.id, result.latency_s, result.prefill_tokens, result.tokens_used, ok=True)
        return result

    def _evidence(self, span: Any) -> dict[str, Any]:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, UTC).isoformat()

        url = None if span.frame is None else f"/cameras/{span.camera_id}/snapshot?frame={span.frame}"
        return {
            "camera": span.camera_id,
            "from": span.from_s,
            "to": span.to_s,
            "from_time": iso(span.from_wall),
            "to_time": iso(span.to_wall),
            "snapshot_url": url,
        }

    # ----------------------------------------------------------------------------------------- rules
    async def add_rule(self, spec: RuleSpec) -> Rule:
        self.camera(spec.camera_id)
        rule = self.alerts.add(spec)
        await self.store.put_rule(rule)
        return rule

    def list_rules(self, camera_id: str | None = None) -> list[Rule]:
        return [r for r in self.alerts.rules.values() if camera_id is None or r.camera_id == camera_id]

    def get_rule(self, rule_id: str) -> Rule:
        try:
            return self.alerts.rules[rule_id]
        except KeyError:
            raise UnknownRule(rule_id) from None

    async def remove_rule(self, rule_id: str) -> None:
        self.get_rule(rule_id)
        self.alerts.remove(rule_id)
        await self.store.delete_rule(rule_id)

    # ----------------------------------------------------------------------------------------- health
    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks = {
            "model": {"ok": self.backend is not None, "backend": getattr(self.backend, "name", None)},
            "state": {"ok": bool(self.store.healthy), "reason": self.store.reason},
            "mqtt": {
                "ok": self.publisher.ready,
                "reason": None if self.publisher.ready else "broker not connected",
            },
        }
        return all(c["ok"] for c in checks.values()), checks

    def _snapshot(self) -> ServiceSnapshot:
        cams = []
        for camera in list(self.cameras.values()):
            stats = camera.source.stats if camera.source is not None else camera.last_stats
            if stats is None:
                cams.append(CameraSnapshot(camera=camera.id, up=False, memory_entries=len(camera.memory)))
                continue
            snap = CameraSnapshot.from_parts(camera.id, camera.state, stats, camera.memory)
            if camera.frames_rejected:
                snap = dataclasses.replace(snap, drops={**snap.drops, "bad_tokens": camera.frames_rejected})
            cams.append(snap)
        pub = self.publisher
        return ServiceSnapshot(
            cameras=cams,
            mqtt_connected=bool(getattr(pub, "connected", False)),
            redis_connected=bool(self.store.healthy),
            outbox_length=len(self.store.outbox),
            mqtt_sent=pub.stats.sent,
            mqtt_failed=pub.stats.failed,
            mqtt_dropped=pub.stats.dropped,
            mqtt_reconnects=pub.stats.reconnects,
        )


ANSWER_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    """Run the answer worker at a lower CPU priority than ingest and encoding.

    Linux threads have their own nice. Questions are bursty and can wait a little; frames cannot (they are
    dropped when the encoder falls behind).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ANSWER_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: keep the default priority
        log.debug("could not lower the answer thread's priority")


def _with_history(question: str, history: list[Turn]) -> str:
    if not history:
        return question
    lines = [f"Q: {t.question}\nA: {t.answer}" for t in history[-5:]]
    return "Earlier in this conversation:\n" + "\n".join(lines) + f"\n\nQuestion: {question}"
