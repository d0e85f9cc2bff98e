"""One encoder per node: `NodeEncoder`, a Ray actor pinned to its node, batches the frames of every camera
actor on that node into one model (one copy of the weights per node, not per camera); `RemoteEncoder` is
what a camera actor's pipeline encodes with instead of a batcher of its own (`SCISSOR_RAY__ENCODER=node`).

A camera actor finds its node's encoder by name (`encoder:<node id>`, created by the first camera there).
Frames go to it through Ray's object store and tokens come back on the host: on CUDA the camera moves them
to its own device, one host round trip per frame that `SCISSOR_RAY__ENCODER=camera` avoids.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agent.camera.batcher import EncodeBatcher
from agent.settings import Settings

ENCODER_PREFIX = "encoder:"  # Ray actor name of a node's encoder: encoder:<node id>


@dataclass(frozen=True)
class EncoderStats:
    """What a node's encoder did since it started, over its lanes: `frames > batches` means frames of
    several cameras shared a batch (each camera has at most one frame in flight)."""

    node: str
    batches: int
    frames: int
    encode_seconds: float
    largest_batch: int


def on_cuda(settings: Settings, cluster_gpus: float) -> bool:
    """Whether actors run their model on CUDA: `cuda*`, or `auto` on a cluster with GPUs."""
    return settings.device.startswith("cuda") or (settings.device == "auto" and cluster_gpus > 0)


def encoder_options(settings: Settings, node_id: str, cluster_gpus: float) -> dict[str, Any]:
    """Ray options of a node's encoder: named after its node, pinned there (it dies with the node: the
    cameras that move elsewhere use that node's encoder), outliving the camera that created it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {
        "name": ENCODER_PREFIX + node_id,
        "namespace": settings.ray.namespace,
        "get_if_exists": True,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_concurrency": 64,  # every camera's call waits in the batcher at once
        "num_cpus": settings.ray.encoder_cpus,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False),
    }
    if on_cuda(settings, cluster_gpus) and settings.ray.encoder_gpus > 0:
        options["num_gpus"] = settings.ray.encoder_gpus
    return options


class NodeEncoder:
    """A node's encoder (decorated with `ray.remote` where it is started, not here): the backend's encoder
    behind `EncodeBatcher`s, as the single-process service shares one among its cameras.

    On the CPU it runs one batcher per core ("lanes"), each in its own thread with one torch thread: a frame
    goes to the lane with the fewest frames in flight, so frames that arrive together share a batch and a
    busy lane does not hold the others up (one lane with every core measured half the frames/s of one
    process per camera, `docs/cluster.md`). On a GPU, one lane.

    Args:
        settings: the service's settings (backend, device).
        cores: the node's CPUs.
    """

    def __init__(self, settings: Settings, cores: int) -> None:
        import ray

        from agent.models import backend_from_settings

        backend = backend_from_settings(settings)
        on_gpu = getattr(backend.encoder, "device", torch.device("cpu")).type != "cpu"
        self._lanes_wanted = 1 if on_gpu else max(1, cores)
        torch.set_num_threads(max(1, cores) if on_gpu else 1)
        self._node = str(ray.get_runtime_context().get_node_id())
        self._encoder = backend.encoder
        self._lanes: list[EncodeBatcher] = []
        self._in_flight: list[int] = []
        self._largest = 0

    async def encode(self, rgb: np.ndarray) -> tuple[torch.Tensor, float]:
        """Tokens `[N, D]` of one frame, on the host, batched with the frames other cameras sent meanwhile;
        and the encoder seconds per frame."""
        if not self._lanes:  # the actor's event loop exists only once a call runs
            for _ in range(self._lanes_wanted):
                lane = EncodeBatcher(self._encoder.encode)
                await lane.start()
                self._lanes.append(lane)
                self._in_flight.append(0)
        if not rgb.flags.writeable:  # Ray hands arrays over read-only, from its object store
            rgb = rgb.copy()
        i = min(range(len(self._lanes)), key=self._in_flight.__getitem__)
        self._in_flight[i] += 1
        try:
            tokens, seconds = await self._lanes[i].encode(rgb)
        finally:
            self._in_flight[i] -= 1
        self._largest = max(self._largest, self._lanes[i].stats.last_batch_size)
        return tokens.cpu(), seconds

    async def pid(self) -> int:
        """The actor's process id (tests crash it)."""
        return os.getpid()

    async def stats(self) -> EncoderStats:
        lanes = [lane.stats for lane in self._lanes]
        return EncoderStats(
            self._node,
            sum(s.batches for s in lanes),
            sum(s.frames for s in lanes),
            sum(s.encode_seconds for s in lanes),
            self._largest,
        )


def node_cpus(ray: Any, node_id: str) -> int:
    """The CPUs Ray says a node has (its encoder's lanes)."""
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return max(1, int((node.get("Resources") or {}).get("CPU", 1)))
    return 1


class RemoteEncoder:
    """A camera pipeline's encoder in cluster mode: its node's `NodeEncoder`, found (or started) by name.

    A call that finds the encoder gone (its process crashed; Ray restarts it on the same node) looks it up
    again and retries until `timeout_s` has passed since the first try.

    Args:
        settings: the service's settings.
        device: where the pipeline's memory lives (tokens are moved there).
        timeout_s: how long one frame may wait for an encoder that is restarting.
    """

    def __init__(self, settings: Settings, device: torch.device, timeout_s: float) -> None:
        import ray

        self._ray: Any = ray  # Ray's API is partly untyped
        self._settings, self._device, self._timeout_s = settings, device, timeout_s
        self._node = str(ray.get_runtime_context().get_node_id())
        self._gpus = float(self._ray.cluster_resources().get("GPU", 0.0))
        self._actor_class = self._ray.remote(NodeEncoder)
        self._handle: Any = None

    def handle(self) -> Any:
        """The node's encoder actor (started here when no camera of this node has started it yet)."""
        if self._handle is None:
            options = encoder_options(self._settings, self._node, self._gpus)
            actor = self._actor_class.options(**options)
            self._handle = actor.remote(self._settings, node_cpus(self._ray, self._node))
        return self._handle

    async def encode(self, rgb: np.ndarray) -> tuple[torch.Tensor, float]:
        from ray.exceptions import RayActorError

        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                tokens, seconds = await self.handle().encode.remote(rgb)
                return tokens.to(self._device), float(seconds)
            except RayActorError:
                if time.monotonic() > deadline:
                    raise
                self._handle = None
                await asyncio.sleep(0.5)
