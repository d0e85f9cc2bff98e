"""One camera's rule runner: memory updates become observations, alerts go to the dispatcher with the camera's
evidence, prompt rules ask over the camera's memory, rule state reaches the store."""

from __future__ import annotations

import asyncio

import pytest
import torch
from prometheus_client import CollectorRegistry
from torch import Tensor

from agent.errors import InvalidRequest
from agent.models.labels import Labeler
from agent.outputs.dispatch import Dispatcher
from agent.outputs.events import EventBus, Subscription
from agent.outputs.metrics import Metrics
from agent.records import Alert, Evidence, RuleSpec
from agent.rules.runner import RuleRunner
from agent.state.store import MemoryStore
from compress.memory import EntryInfo, MemoryUpdate

CLASS = 281  # the one ImageNet class the test labeler's head sees (dimension 0 of a token)


class Camera:
    """A camera as the runner reads it: one memory entry whose token says how much of CLASS it shows."""

    id = "cam1"

    def __init__(self, strength: float = 0.0) -> None:
        self.strength = strength
        self.reads: list[tuple[float | None, float | None]] = []

    def read(self, since: float | None, until: float | None) -> tuple[Tensor, list[EntryInfo]]:
        self.reads.append((since, until))
        token = torch.zeros(1, 4)
        token[0, 0] = self.strength
        return token, [EntryInfo(0, 0.0, 1.0, 10, 2, (3,), ((0.0, 1.0),), (3,))]

    def evidence(self, t: float, frame: int | None) -> tuple[list[Evidence], str | None]:
        url = f"/cameras/cam1/snapshot?frame={frame}"
        return [Evidence(camera="cam1", from_s=t - 2.0, to_s=t, snapshot_url=url)], url


def labeler() -> Labeler:
    head = torch.zeros(4, 1000)
    head[0, CLASS] = 1.0
    return Labeler(lambda tokens: tokens @ head)


def update(t: float, novelty: float) -> MemoryUpdate:
    return MemoryUpdate(t, int(t), (1,), (), (), (), novelty, 3)


class Setup:
    def __init__(self, camera: Camera, *, with_labeler: bool = True, answer: str = "yes") -> None:
        self.bus, self.store = EventBus(), MemoryStore()
        self.alerts: Subscription = self.bus.subscribe(accept=lambda r: isinstance(r, Alert))
        self.dispatcher = Dispatcher(bus=self.bus, metrics=Metrics(CollectorRegistry()))
        self.questions: list[tuple[str, float]] = []
        self.answer = answer

        async def ask(question: str, since: float) -> str:
            self.questions.append((question, since))
            if self.answer == "fail":
                raise RuntimeError("the answerer broke")
            return self.answer

        self.runner = RuleRunner(
            camera,
            labeler=labeler() if with_labeler else None,
            dispatcher=self.dispatcher,
            store=self.store,
            ask=ask,
            backend_name="test",
        )
        self.runner.start()


def rule(kind: str, params: dict[str, object], **kw: object) -> RuleSpec:
    return RuleSpec.model_validate({"camera_id": "cam1", "kind": kind, "params": params, **kw})


async def test_a_novel_frame_fires_a_novelty_alert_with_the_cameras_evidence_and_its_state_is_stored() -> (
    None
):
    s = Setup(Camera())
    added = s.runner.add(rule("novelty", {"threshold": 0.5}))
    await s.runner.on_update(7, update(10.0, 0.2))
    await s.runner.on_update(8, update(11.0, 0.9))
    alert = await s.alerts.get(1)
    assert isinstance(alert, Alert) and (alert.rule, alert.camera, alert.stream_s) == (added.id, "cam1", 11.0)
    assert alert.snapshot_url == "/cameras/cam1/snapshot?frame=8" and alert.evidence[0].to_s == 11.0
    assert s.alerts.pending() == 0, "one alert for the NO -> YES transition"
    assert (await s.store.rule_states())[added.id]["delivered_t"] is not None, "delivered, and stored so"


async def test_a_label_rule_scores_the_entries_the_frame_touched() -> None:
    camera = Camera(strength=20.0)
    s = Setup(camera)
    added = s.runner.add(rule("label", {"label": str(CLASS), "min_score": 0.9}))
    await s.runner.on_update(4, update(5.0, 0.0))
    alert = await s.alerts.get(1)
    assert isinstance(alert, Alert) and alert.rule == added.id and alert.score > 0.9
    assert camera.reads == [(5.0, None)], "the memory since this frame: its components"


def test_a_label_rule_is_refused_when_the_backend_cannot_label() -> None:
    s = Setup(Camera(), with_labeler=False)
    with pytest.raises(InvalidRequest, match="backend test cannot label frames") as refused:
        s.runner.add(rule("label", {"label": "cat"}))
    assert refused.value.field == "kind" and s.runner.rules() == []


@pytest.mark.parametrize("label", ["person", "people", "pedestrian"])
def test_a_label_rule_on_something_the_model_cannot_see_is_refused_with_what_it_can(label: str) -> None:
    s = Setup(Camera())
    with pytest.raises(InvalidRequest, match=f"cannot recognise '{label}'.*it can see e.g.") as refused:
        s.runner.add(rule("label", {"label": label}))
    assert refused.value.field == "params.label" and s.runner.rules() == []


async def test_a_due_prompt_rule_asks_over_its_window_and_a_yes_fires_with_the_answer() -> None:
    s = Setup(Camera(), answer="Yes, the door is open.")
    added = s.runner.add(rule("prompt", {"question": "is the door open?", "window_s": 5}))
    await s.runner.on_update(30, update(30.0, 0.0))
    alert = await s.alerts.get(5)
    assert s.questions == [("is the door open? Answer yes or no.", 25.0)]
    assert isinstance(alert, Alert) and alert.rule == added.id and alert.answer == "Yes, the door is open."


@pytest.mark.parametrize(("budget", "alerts"), [(None, 2), (1, 1)])
async def test_prompt_rule_alerts_count_against_the_cameras_alert_budget(
    budget: int | None, alerts: int
) -> None:
    s = Setup(Camera(), answer="Yes.")
    if budget is not None:
        s.runner.engine.limit_alerts(budget, per_s=60.0)
    s.runner.add(rule("prompt", {"question": "is the door open?"}))
    s.runner.add(rule("prompt", {"question": "is the gate open?"}))
    await s.runner.on_update(30, update(30.0, 0.0))
    await asyncio.sleep(0.3)
    assert len(s.questions) == 2 and s.alerts.pending() == alerts


async def test_a_failed_prompt_question_is_a_skipped_check_and_stop_cancels_questions_in_flight() -> None:
    s = Setup(Camera(), answer="fail")
    s.runner.add(rule("prompt", {"question": "is it raining?"}))
    await s.runner.on_update(1, update(1.0, 0.0))
    await asyncio.sleep(0.1)
    assert len(s.questions) == 1 and s.alerts.pending() == 0
    await s.runner.stop()
    assert s.runner._prompt_tasks == {}


def test_a_removed_rule_is_forgotten() -> None:
    s = Setup(Camera())
    added = s.runner.add(rule("novelty", {"threshold": 0.5}))
    s.runner.remove(added.id)
    assert s.runner.rules() == [] and s.runner.engine.rule(added.id) is None
