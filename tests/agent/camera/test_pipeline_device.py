"""Tokens stay on the encoder's device from the vision tower to the memory (issue 21): the memory is built on
the resolved device, the per-frame path makes no copy to the host and stays within the memory's host-sync
budget, and readers hold the ingest lock only while a view's device copies queue."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry
from skimage import data

from agent.camera.batcher import EncodeBatcher
from agent.camera.options import build_memory
from agent.camera.pipeline import CameraPipeline, Collaborators, encoder_device
from agent.camera.runtime import CameraRuntime
from agent.models import Backend, load_backend
from agent.outputs.dispatch import Dispatcher
from agent.outputs.events import EventBus
from agent.outputs.metrics import Metrics
from agent.questions import Questions
from agent.settings import CameraDefaults
from agent.state import memory_blobs
from agent.state.store import MemoryStore
from compress import TokenMemory
from compress.syncs import HostSyncs
from streamer import Frame

ADD_FRAME_BUDGET = 16  # tests/compress/test_host_syncs.py: add_frame's budget, below and at capacity
PX = 128  # 4 x 4 tokens per frame: the real encoder, small and fast
CAPACITY = 12  # reached after a few frames, so consolidation runs on most of them
HOST_READS = {"cpu", "numpy", "device_copy"}  # what a copy of the tokens to the host would count as


@pytest.fixture(scope="module")
def backend() -> Backend:
    return load_backend("embedded", device="cpu", image_px=PX)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def frames(count: int) -> list[Frame]:
    """Real photos (skimage's), panned a little per frame and cycling through four scenes."""
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]  # type: ignore[no-untyped-call]
    out = []
    for i in range(count):
        photo = photos[(i // 6) % len(photos)]
        x = 4 * (i % 6)
        rgb = np.ascontiguousarray(photo[x : x + 256, x : x + 256, :3])
        out.append(Frame("yard", i, float(i), 1000.0 + i, rgb, 1.0))
    return out


def pipeline(backend: Backend) -> CameraPipeline:
    metrics = Metrics(CollectorRegistry())
    store = MemoryStore()
    device = encoder_device(backend.encoder, "auto")
    collaborators = Collaborators(
        encoder=EncodeBatcher(backend.encoder.encode),
        store=store,
        dispatcher=Dispatcher(bus=EventBus(), metrics=metrics),
        metrics=metrics,
        questions=Questions(answerer=backend.answerer, store=store, metrics=metrics),
        labeler=backend.labeler,
        backend_name=backend.name,
        frame_size=backend.frame_size,
        device=device,
    )
    memory = build_memory(
        {"capacity": CAPACITY, "tau": 0.9},
        defaults=CameraDefaults(),
        token_dim=backend.token_dim,
        backend_tau=backend.default_tau,
        device=collaborators.device,
    )
    runtime = CameraRuntime(
        id="yard", url="rtsp://cam/1", fps=1.0, options={}, added_at=1000.0, memory=memory
    )
    return CameraPipeline(runtime, collaborators)


def test_the_memory_is_built_on_the_encoders_device(backend: Backend) -> None:
    resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # what device="auto" means
    assert encoder_device(backend.encoder, "auto") == backend.encoder.device == torch.device("cpu")  # type: ignore[attr-defined]
    assert encoder_device(object(), "auto") == resolved  # no device of its own: the setting
    assert encoder_device(object(), "cpu") == torch.device("cpu")
    memory = pipeline(backend).runtime.memory
    assert memory.device == backend.encoder.device  # type: ignore[attr-defined]
    assert all(buf.device == memory.device for buf in memory._rows.values())


def test_the_per_frame_path_keeps_the_tokens_on_their_device_within_the_host_sync_budget(
    backend: Backend,
) -> None:
    camera = pipeline(backend)
    memory = camera.runtime.memory
    counts, at_capacity = [], 0
    for frame in frames(30):
        tokens = backend.encoder.encode([frame.rgb])[0]
        assert tokens.device == memory.device  # what the batcher hands on: no copy to the host
        camera.runtime.frames_processed = frame.index  # as _on_frame counts them (SCC timed every 4th)
        with HostSyncs() as syncs:
            done = camera._add_frame(tokens, frame.pts_s, frame)
        assert done is not None
        at_capacity += len(memory) == CAPACITY
        assert not HOST_READS & set(syncs.by_op), syncs.by_op
        # Every frame within add_frame's own budget, also those where the spatial SCC is timed once more
        # (every 4th, outside the lock: a metric) or the keyframes the memory names are read (every 8th, from
        # a view off the lock).
        counts.append(syncs.total)
        assert syncs.total <= ADD_FRAME_BUDGET, (frame.index, syncs.by_op)
    assert at_capacity >= 20 and memory.consolidations_total > 0  # the budget held at capacity too
    assert max(counts) <= ADD_FRAME_BUDGET


def test_a_view_is_taken_without_a_host_sync_and_never_changes_after(backend: Backend) -> None:
    camera = pipeline(backend)
    memory = camera.runtime.memory
    stream = frames(16)
    for frame in stream[:10]:
        camera._add_frame(backend.encoder.encode([frame.rgb])[0], frame.pts_s, frame)
    tokens, entries = memory.tokens()
    blob = memory.to_bytes()
    with HostSyncs() as syncs:
        view = memory.view()
    assert syncs.total == 0 and view.device == memory.device
    for frame in stream[10:]:  # the memory moves on; the view stays as it was taken
        camera._add_frame(backend.encoder.encode([frame.rgb])[0], frame.pts_s, frame)
    later, entries_later = view.tokens()
    assert torch.equal(later, tokens) and entries_later == entries
    assert view.to_bytes() == blob  # a snapshot from the view is the memory's snapshot at that moment
    assert memory.tokens()[1] != entries


def test_reads_and_snapshots_come_from_a_view(backend: Backend) -> None:
    camera = pipeline(backend)
    memory = camera.runtime.memory
    for frame in frames(12):
        camera._add_frame(backend.encoder.encode([frame.rgb])[0], frame.pts_s, frame)
    tokens, entries = camera.read(3.0, 8.0)
    want_tokens, want_entries = memory.tokens(3.0, 8.0)
    assert torch.equal(tokens, want_tokens) and entries == want_entries and entries
    assert camera.status().memory_entries == len(memory)
    saved = memory_blobs.from_blob(camera._memory_blob(), device=memory.device)
    assert saved.added_at == 1000.0 and saved.memory.tokens()[1] == memory.tokens()[1]
    assert torch.equal(saved.memory.tokens()[0], memory.tokens()[0])


def test_the_lock_is_held_for_the_views_copies_only_while_a_snapshot_serialises(backend: Backend) -> None:
    camera = pipeline(backend)
    for frame in frames(12):
        camera._add_frame(backend.encoder.encode([frame.rgb])[0], frame.pts_s, frame)
    lock = camera.runtime.memory_lock
    held: list[float] = []
    real_view = TokenMemory.view

    def view(self: TokenMemory, *, sums: bool = True) -> object:
        assert lock.locked()  # taken under the ingest lock ...
        held.append(time.perf_counter())
        return real_view(self, sums=sums)

    original = memory_blobs.to_blob

    def to_blob(added_at: float, memory: object) -> bytes:
        assert not lock.locked()  # ... and serialised after it was released
        return original(added_at, memory)  # type: ignore[arg-type]

    mp = pytest.MonkeyPatch()
    mp.setattr(TokenMemory, "view", view)
    mp.setattr(memory_blobs, "to_blob", to_blob)
    try:
        assert camera._memory_blob()
        camera.read(None, None)
        camera.status()
    finally:
        mp.undo()
    assert len(held) == 3


def test_a_frame_of_nan_tokens_is_refused_by_the_memory_and_changes_nothing(backend: Backend) -> None:
    camera = pipeline(backend)
    memory = camera.runtime.memory
    stream = frames(4)
    for frame in stream[:3]:
        camera._add_frame(backend.encoder.encode([frame.rgb])[0], frame.pts_s, frame)
    before = memory.to_bytes()
    bad = backend.encoder.encode([stream[3].rgb])[0].clone()
    bad[1, 5] = float("nan")
    assert camera._add_frame(bad, stream[3].pts_s, stream[3]) is None
    assert memory.to_bytes() == before
