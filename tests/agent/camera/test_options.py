"""Per-camera options: memory and source options split, typed and range-checked, and the memory they make."""

from __future__ import annotations

import pytest

from agent.camera.options import build_memory, split_options
from agent.errors import InvalidRequest
from agent.settings import CameraDefaults


def test_options_split_into_memory_and_source_options_with_their_types() -> None:
    memory, source = split_options(
        {"tau": "0.85", "capacity": 64.0, "transport": "udp", "queue_size": "4", "loop": True},
        allow_files=True,
    )
    assert memory == {"tau": 0.85, "capacity": 64}
    assert source == {"transport": "udp", "queue_size": 4, "loop": True}
    assert type(memory["capacity"]) is int and type(source["queue_size"]) is int


@pytest.mark.parametrize(
    ("options", "field", "reason"),
    [
        ({"colour": 1}, "options.colour", "unknown option; allowed: backoff_max_s, capacity"),
        ({"capacity": 0}, "options.capacity", "between 1 and 65536"),
        ({"window_s": 1e9}, "options.window_s", "between 1.0 and 604800.0"),
        ({"queue_size": "many"}, "options.queue_size", "must be a int"),
        ({"loop": "yes"}, "options.loop", "true or false"),
        ({"transport": "http"}, "options.transport", "tcp or udp"),
    ],
)
def test_a_bad_option_is_refused_naming_the_option_and_what_is_allowed(
    options: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        split_options(options, allow_files=True)
    assert refused.value.field == field and reason in refused.value.reason


def test_looping_needs_a_server_that_allows_local_files() -> None:
    with pytest.raises(InvalidRequest, match="only for local files"):
        split_options({"loop": True}, allow_files=False)


def test_a_memory_takes_the_backends_tau_unless_the_setting_or_the_camera_names_one() -> None:
    defaults = CameraDefaults()
    assert build_memory({}, defaults=defaults, token_dim=8, backend_tau=0.8).tau == 0.8
    configured = CameraDefaults(tau=0.7)
    assert build_memory({}, defaults=configured, token_dim=8, backend_tau=0.8).tau == 0.7
    camera = build_memory({"tau": 0.6, "capacity": 5}, defaults=configured, token_dim=8, backend_tau=0.8)
    assert (camera.tau, camera.capacity, camera.dim) == (0.6, 5, 8)
    assert camera.window_s == defaults.window_s


def test_a_memory_the_memory_itself_refuses_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as refused:
        build_memory({"tau": 1.5}, defaults=CameraDefaults(), token_dim=8, backend_tau=0.8)
    assert refused.value.field == "options"
