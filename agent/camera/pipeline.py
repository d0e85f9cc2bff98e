"""One camera, end to end: ingest -> encode -> memory -> keyframes -> rules, its records out.

The unit an engine may place on any machine. Everything about the camera sits behind a narrow interface
(`start`/`stop`/`restart`, `status`, `read` for questions, `memory_summary`, `keyframe`, `save_memory`,
`scrape`), and what it shares with other cameras (the batched encoder, the store, the dispatcher, the metrics,
the questions its prompt rules ask) is handed in as `Collaborators`, never looked up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from agent.camera.batcher import FrameEncoder
from agent.camera.detections import Detection, DetectionTrack, Label, PeopleFeed, PeopleSetup, Presence
from agent.camera.keyframes import Keyframe
from agent.camera.runtime import CameraRuntime
from agent.camera.watcher import CameraWatcher
from agent.errors import InvalidRequest, KeyframeGone
from agent.models.base import PeopleSeen
from agent.models.labels import Labeler
from agent.models.preprocess import pick_device
from agent.outputs.dispatch import Dispatcher
from agent.outputs.metrics import Metrics
from agent.outputs.scrape import CameraScrape
from agent.questions import Questions, TimeRange
from agent.records import CameraStatus, Event, Evidence, MemoryEntry, MemorySaved, MemorySummary
from agent.rules.runner import RuleRunner
from agent.state import memory_blobs
from agent.state.store import Store
from compress.memory import EntryInfo, MemoryUpdate
from compress.scc import normalize, semantic_components
from streamer import Frame

log = logging.getLogger(__name__)

RETAIN_EVERY = 8  # frames between checks of which keyframes the memory still names as evidence
SCC_TIMED_EVERY = 4  # frames between timings of the spatial SCC alone (scissor_scc_seconds)
NOVELTY_EVENT_AT = 0.5  # novelty at or above which a "novelty" event goes to /events and MQTT
STATUS_EVENTS = {"online": "stream_up", "offline": "stream_down"}  # other states are plain "status" events


@dataclass(frozen=True)
class Collaborators:
    """What a camera pipeline is given: what it shares with the other cameras of its process.

    Attributes:
        encoder: frames -> tokens, batched across cameras.
        store: memory blobs and rule state.
        dispatcher: records out (events, status, alerts) and their outcomes back.
        metrics: per-frame encode and memory-update observations.
        questions: answers prompt rules' questions over the camera's memory.
        labeler: labels memory entries and scores label rules (None: the backend cannot).
        backend_name: named when a label rule is refused.
        frame_size: (width, height) frames are decoded at (the encoder's input).
        device: where the encoder's tokens come out (`encoder_device`): memories are built there, so the
            tokens go from the vision tower into the memory without a copy to the host.
        people: the person / face detector and its fps (None: no detector, the track stays empty).
    """

    encoder: FrameEncoder
    store: Store
    dispatcher: Dispatcher
    metrics: Metrics
    questions: Questions
    labeler: Labeler | None
    backend_name: str
    frame_size: tuple[int, int]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    people: PeopleSetup | None = None


def encoder_device(encoder: object, setting: str) -> torch.device:
    """The device an encoder's tokens come out on: its own `device` when it has one, else the device setting
    (`SCISSOR_DEVICE`: "auto" is CUDA when present, else the CPU) resolved."""
    device = getattr(encoder, "device", None)
    return device if isinstance(device, torch.device) else pick_device(setting)


class CameraPipeline:
    """One camera's ingest, memory, keyframes and rules; `runtime` holds its state."""

    def __init__(self, runtime: CameraRuntime, collaborators: Collaborators) -> None:
        self.runtime, self._with = runtime, collaborators
        self.rules = RuleRunner(
            self,
            labeler=collaborators.labeler,
            dispatcher=collaborators.dispatcher,
            store=collaborators.store,
            ask=self._ask,
            backend_name=collaborators.backend_name,
        )
        self._watcher = self._new_watcher()
        self._inflight: asyncio.Future[tuple[MemoryUpdate, float, float, float | None] | None] | None = None
        people = collaborators.people
        self._track = DetectionTrack(capacity=people.detections_kept if people else 1)
        self._people = PeopleFeed(people.detector, self._track, fps=people.fps) if people else None

    def _new_watcher(self) -> CameraWatcher:
        return CameraWatcher(
            self.runtime,
            frame_size=self._with.frame_size,
            on_frame=self._on_frame,
            on_status=self._on_status,
        )

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start ingest; the camera's metric series exist at 0 from now."""
        self._with.metrics.watch_camera(self.id)
        self.rules.start()
        self._watcher.start()

    async def stop(self) -> None:
        """Stop ingest, let a memory update already running finish, cancel rule questions in flight."""
        await self._stop_ingest()
        await self.rules.stop()

    async def restart(self, *, url: str, fps: float, options: dict[str, Any]) -> None:
        """Ingest again from `url` at `fps` with source `options`; memory, keyframes, rules, counters stay."""
        await self._stop_ingest()
        camera = self.runtime
        camera.url, camera.fps, camera.options = url, fps, dict(options)
        camera.state, camera.reason = "connecting", ""
        self._watcher = self._new_watcher()
        self._watcher.start()

    async def _stop_ingest(self) -> None:
        await self._watcher.stop()
        if self._inflight is not None:  # a memory update already running in its thread finishes first
            await asyncio.gather(self._inflight, return_exceptions=True)
        if self._people is not None:
            await self._people.drain()

    # ------------------------------------------------------------------------------------------ reads
    @property
    def id(self) -> str:
        """The camera id."""
        return self.runtime.id

    @property
    def added_at(self) -> float:
        """Wall-clock second of stream second 0."""
        return self.runtime.added_at

    @property
    def token_dim(self) -> int:
        """D of the memory's tokens."""
        return self.runtime.memory.dim

    def stream_seconds(self) -> float:
        """Stream seconds now."""
        return self.runtime.stream_seconds()

    def read(self, since: float | None, until: float | None) -> tuple[torch.Tensor, list[EntryInfo]]:
        """Memory tokens `[K, D]` (on the memory's device) and their entries present in the range: one whole
        update's view (an update may be running in its worker thread). The lock is held only while the view's
        device copies queue; the host reads them after (`compress.view`)."""
        with self.runtime.memory_lock:
            view = self.runtime.memory.view()
        return view.tokens(since, until)

    # People (docs/people.md): what the person / face detector saw, per sampled frame, in stream seconds.
    @property
    def people_detector(self) -> str | None:
        """The person / face detector's name ("mediapipe"), None when the camera has none (then every
        people read below is empty: nothing may be said about people)."""
        return self._people.detector.name if self._people is not None else None

    def detections(self, since: float | None = None, until: float | None = None) -> list[Detection]:
        """Every frame the detector ran on with `since <= t <= until` (None: open), oldest first."""
        return self._track.between(since, until)

    def presence(
        self, label: Label, since: float | None = None, until: float | None = None
    ) -> list[Presence]:
        """Runs of detected frames in the range with `label` ("person" or "face") present, oldest first."""
        return self._track.intervals(label, since, until)

    def detection_at(self, t: float, *, tolerance_s: float | None = None) -> Detection | None:
        """The detection nearest stream second `t` within `tolerance_s` (default half the track's gap),
        None when the detector ran on no frame that close."""
        return self._track.nearest(t, tolerance_s=tolerance_s)

    def people(self, since: float | None, until: float | None) -> PeopleSeen | None:
        """What the detector saw in the range, as a question reads it; None without a detector."""
        name = self.people_detector
        if name is None:
            return None
        sampled = self.detections(since, until)

        def runs(label: Label) -> tuple[tuple[float, float, int], ...]:
            return tuple((p.start_s, p.end_s, p.max_count) for p in self.presence(label, since, until))

        covered = (sampled[0].t, sampled[-1].t) if sampled else None
        samples = tuple((d.t, d.persons, d.faces) for d in sampled)
        return PeopleSeen(name, runs("person"), runs("face"), covered, samples)

    def keyframe_time(self, frame: int) -> float | None:
        """The stream second of frame index `frame` while its JPEG is kept, else None."""
        kept = self.runtime.keyframes.get(frame)
        return None if kept is None else kept.t

    def status(self) -> CameraStatus:
        """The camera's live status (`GET /cameras/{id}`, MQTT `<root>/<camera>/status`)."""
        camera = self.runtime
        stats = camera.stats()
        with camera.memory_lock:
            view = camera.memory.view(sums=False)
        summary, entries = view.summary(), len(view)
        return CameraStatus(
            id=camera.id,
            url=camera.redacted_url,
            state=camera.api_state,
            reason=camera.reason or None,
            fps_in=float(getattr(stats, "input_fps", 0.0) or 0.0),
            fps_out=camera.fps_out(),
            frames_dropped=camera.frames_rejected
            + (int(sum(getattr(stats, "drops", {}).values())) if stats else 0),
            reconnects=int(getattr(stats, "reconnects", 0)) if stats else 0,
            memory_entries=entries,
            compression_ratio=float(summary.get("tokens_stored", 0) or 0) / entries if entries else 0.0,
            insecure_tls=bool(camera.options.get("insecure_tls", False)),
        )

    def memory_summary(self, *, since_s: float | None, limit: int) -> MemorySummary:
        """The newest `limit` entries seen in the last `since_s` seconds (all when None), labelled when the
        backend can."""
        memory = self.runtime.memory
        since = None if since_s is None else max(0.0, self.stream_seconds() - since_s)
        with self.runtime.memory_lock:
            view = memory.view()
        tokens, entries = view.tokens(since, None)
        summary, size = view.summary(), len(view)
        tokens, entries = tokens[-limit:], entries[-limit:]  # the newest entries, labelled row for row
        labels = self.top_labels(tokens, 3) if entries else []
        tokens_in = int(summary.get("tokens_in_total", 0) or 0)
        return MemorySummary(
            camera=self.id,
            entries=size,
            capacity=memory.capacity,
            window_s=memory.window_s,
            tokens_in_total=tokens_in,
            compression_ratio=int(summary.get("tokens_stored", 0) or 0) / size if size else 0.0,
            stats=dict(summary),
            items=[_entry(e, labels[i] if labels else []) for i, e in enumerate(entries)],
        )

    def top_labels(self, tokens: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """Top-k labels of memory tokens `[K, D]`, or [] when the backend cannot label."""
        if self._with.labeler is None or tokens.shape[0] == 0:
            return []
        return self._with.labeler.label(tokens, k)

    def keyframe(self, *, frame: int | None = None, t: float | None = None) -> Keyframe:
        """The kept keyframe of frame index `frame`, or taken at stream second `t`, or the newest one; never
        another moment's picture: KeyframeGone (404) when that frame is not kept."""
        if frame is not None and t is not None:
            raise InvalidRequest("frame", "give frame or t, not both")
        store = self.runtime.keyframes
        found = store.get(frame) if frame is not None else store.at(t) if t is not None else store.latest()
        if found is None:
            what = f"of frame {frame}" if frame is not None else f"at t={t}" if t is not None else "yet"
            raise KeyframeGone(self.id, what)
        return found

    def evidence(self, t: float, frame: int | None) -> tuple[list[Evidence], str | None]:
        """An alert's evidence: the moment it fired and the keyframe of `frame` (the newest when None), pinned
        so the alert's link stays valid after the memory stops naming the frame (no link when not kept)."""
        keyframes = self.runtime.keyframes
        if frame is None:
            latest = keyframes.latest()
            frame = None if latest is None else latest.frame
        kept = frame is not None and keyframes.pin(frame)
        url = f"/cameras/{self.id}/snapshot?frame={frame}" if kept else None
        span = Evidence(camera=self.id, from_s=max(0.0, t - 2.0), to_s=t, snapshot_url=url)
        return [span], url

    def scrape(self) -> CameraScrape:
        """The camera's counters at scrape time (source, memory, rejected frames)."""
        camera = self.runtime
        scrape = CameraScrape.from_parts(camera.id, camera.state, camera.stats(), camera.memory)
        if camera.frames_rejected:
            scrape = dataclasses.replace(scrape, drops={**scrape.drops, "bad_tokens": camera.frames_rejected})
        return scrape

    async def save_memory(self) -> MemorySaved:
        """Write the memory, with its time base, to the store as one blob."""
        blob = await asyncio.to_thread(self._memory_blob)  # MBs of tensors: off the event loop
        await self._with.store.put_memory_blob(self.id, blob)
        return MemorySaved(camera=self.id, bytes=len(blob), entries=len(self.runtime.memory))

    def _memory_blob(self) -> bytes:
        # Under the lock only the view's device copies queue; the copy to the host (non-blocking, one wait for
        # those copies alone) and torch.save run here, in a worker thread, while ingest goes on.
        with self.runtime.memory_lock:
            view = self.runtime.memory.view()
        return memory_blobs.to_blob(self.runtime.added_at, view)

    # ------------------------------------------------------------------------------------------ per frame
    async def _on_frame(self, frame: Frame) -> None:
        camera = self.runtime
        tokens, encode_s = await self._with.encoder.encode(frame.rgb)  # on the encoder's device
        # Wall-clock stream seconds survive reconnects (PTS restart); never step back if the clock does.
        t = max(camera.stream_seconds(frame.wall_time), camera.last_t)
        # add_frame takes tens of ms at capacity: it runs in a worker thread so the event loop stays free.
        # Shielded: a stopped pipeline still lets a running update finish (stop() waits for it), so none is
        # half applied.
        self._inflight = asyncio.get_running_loop().run_in_executor(None, self._add_frame, tokens, t, frame)
        done = await asyncio.shield(self._inflight)
        if done is None:  # NaN/inf tokens: add_frame refused them, the memory is untouched
            self._reject(frame, "bad_tokens")
            return
        update, t, update_s, scc_s = done
        camera.last_t = t
        camera.frames_processed += 1
        if self._people is not None:  # at the detector's own fps, in its worker thread: never waited for
            self._people.offer(frame.rgb, t=t, frame=frame.index, aspect=frame.source_aspect)
        camera.processed_times.append(time.monotonic())
        metrics = self._with.metrics
        metrics.encoded(camera.id, 1, encode_s)
        metrics.memory_updated(
            camera.id,
            novelty=update.novelty,
            tokens_kept=len(update.new),
            update_seconds=update_s,
            scc_seconds=scc_s,
        )
        if update.novelty >= NOVELTY_EVENT_AT:
            data = {"novelty": round(update.novelty, 3), "t": round(update.t, 2)}
            await self._with.dispatcher.event(
                Event(kind="novelty", camera=camera.id, message="scene changed", data=data)
            )
        await self.rules.on_update(frame.index, update)

    def _add_frame(
        self, tokens: torch.Tensor, t: float, frame: Frame
    ) -> tuple[MemoryUpdate, float, float, float | None] | None:
        """(update, stream seconds used, seconds taken, spatial SCC seconds or None) of one add_frame under
        the memory lock, then the frame's keyframe (kept while the memory names it as evidence); None when
        the tokens are not finite (add_frame checks that in its first read of the device and changes
        nothing). Runs in a worker thread. The tokens stay on their device: no copy to the host here."""
        camera = self.runtime
        memory = camera.memory
        with camera.memory_lock:
            t = max(
                t, memory.newest_t or t
            )  # a restarted watcher never steps behind the memory's newest frame
            started = time.perf_counter()
            try:
                update = memory.add_frame(tokens, t, frame.index)
            except ValueError as exc:  # NaN/inf tokens (or norms past float32): the frame is skipped
                log.debug("camera %s: frame %d refused by the memory: %s", camera.id, frame.index, exc)
                return None
            update_s = time.perf_counter() - started
        scc_s = self._time_scc(tokens) if camera.frames_processed % SCC_TIMED_EVERY == 0 else None
        camera.keyframes.add(camera.keyframes.encode(frame.index, t, frame.rgb, frame.source_aspect))
        if camera.frames_processed % RETAIN_EVERY == 0:
            with camera.memory_lock:
                view = memory.view(sums=False)
            camera.keyframes.retain(view.live_evidence())  # read off the lock
        return update, t, update_s, scc_s

    def _time_scc(self, tokens: torch.Tensor) -> float:
        """Seconds of the spatial SCC alone on this frame's tokens, as `TokenMemory.add_frame` runs it (same
        device, dtype, tau, zero-norm rows left out). `add_frame` does not report its parts, so every
        `SCC_TIMED_EVERY`-th frame runs the step once more, outside the memory lock, to time it."""
        memory = self.runtime.memory
        x = tokens.to(memory.device, torch.float32)
        x = x[normalize(x)[1]]
        if x.is_cuda:  # CUDA runs ahead of the host: time the kernels, not their launch
            torch.cuda.synchronize(x.device)
        started = time.perf_counter()
        semantic_components(x, memory.tau)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - started

    def _reject(self, frame: Frame, reason: str) -> None:
        # One bad frame (NaN/inf tokens) is skipped and counted (drops with reason "bad_tokens" in the status
        # and the scrape); it must neither poison memory nor restart ingest.
        camera = self.runtime
        camera.frames_rejected += 1
        if camera.frames_rejected == 1 or camera.frames_rejected % 100 == 0:
            log.warning(
                "camera %s: frame %d skipped (%s); %d so far",
                camera.id,
                frame.index,
                reason,
                camera.frames_rejected,
            )

    async def _on_status(self) -> None:
        status = self.status()
        await self._with.dispatcher.event(
            Event(
                kind=STATUS_EVENTS.get(status.state, "status"),
                camera=self.id,
                data={"state": status.state, "reason": status.reason},
                message=f"{status.state}: {status.reason or ''}".strip(),
            )
        )
        await self._with.dispatcher.status(status)

    async def _ask(self, question: str, since: float) -> str:
        """A prompt rule's question over this camera's memory since stream second `since`: the answer text."""
        span = TimeRange(since, None)
        answer = await self._with.questions.answer([self], question, [span], max_new_tokens=8)
        return answer.answer


def _entry(entry: EntryInfo, labels: list[tuple[str, float]]) -> MemoryEntry:
    return MemoryEntry(
        id=entry.id,
        first_seen_s=entry.first_seen,
        last_seen_s=entry.last_seen,
        tokens=entry.count,
        frames=entry.frames,
        evidence_frames=list(entry.evidence),
        intervals=[(a, b) for a, b in entry.intervals],
        interval_frames=list(entry.interval_frames),
        labels=labels,
    )
