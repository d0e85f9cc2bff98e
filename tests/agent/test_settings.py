"""Settings: env names from issue 6, nested sections that refuse typos, config files, readable masked
errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.settings import (
    Settings,
    SettingsError,
    format_validation_error,
    load_settings,
    settings_markdown_table,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("SCISSOR_"):
            monkeypatch.delenv(name)


def test_defaults_need_no_services() -> None:
    s = load_settings()
    assert (s.backend, s.device, s.redis_url, s.mqtt_url) == ("embedded", "auto", "memory://", "none")
    assert not s.mqtt_enabled and not s.redis_enabled and s.api_token is None and s.allow_file_urls is False


def test_the_env_names_of_issue_6_set_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SCISSOR_BACKEND": "tiny",
        "SCISSOR_DEVICE": "cpu",
        "SCISSOR_REDIS_URL": "redis://:pw@localhost:6380/1",
        "SCISSOR_MQTT_URL": "mqtts://user:pw@broker:8883",
        "SCISSOR_HOST": "0.0.0.0",
        "SCISSOR_PORT": "9000",
        "SCISSOR_API_TOKEN": "a-long-enough-token-1234",
        "SCISSOR_CAMERA__FPS": "5",
        "SCISSOR_MQTT__OUTBOX_MAX_ALERTS": "7",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert (s.backend, s.device, s.host, s.port, s.camera.fps, s.mqtt.outbox_max_alerts) == (
        "tiny",
        "cpu",
        "0.0.0.0",
        9000,
        5.0,
        7,
    )
    assert s.api_token is not None and s.api_token.get_secret_value() == "a-long-enough-token-1234"
    assert s.mqtt_enabled and s.redis_enabled


def test_a_yaml_config_file_is_read_and_the_environment_wins_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scissor.yaml"
    path.write_text("port: 9100\ncamera:\n  tau: 0.8\n  window_s: 120\n")
    monkeypatch.setenv("SCISSOR_CONFIG", str(path))
    monkeypatch.setenv("SCISSOR_PORT", "9200")
    s = load_settings()
    assert (s.port, s.camera.tau, s.camera.window_s) == (9200, 0.8, 120.0)


def test_a_toml_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "scissor.toml"
    path.write_text('backend = "tiny"\n[state]\nsession_ttl_s = 60\n')
    s = load_settings(config_file=path)
    assert (s.backend, s.state.session_ttl_s) == ("tiny", 60.0)


@pytest.mark.parametrize(
    "text, suffix, fragment",
    [
        ("camera:\n  fsp: 3\n", ".yaml", "camera.fsp"),
        ("port: [1, 2\n", ".yaml", "does not parse"),
        ("- 1\n- 2\n", ".yaml", "must hold a mapping"),
        ("port = 1", ".ini", "use a .yaml"),
    ],
)
def test_a_bad_config_file_fails_with_a_clear_line(
    tmp_path: Path, text: str, suffix: str, fragment: str
) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=path)
    assert fragment in str(err.value)


def test_a_missing_config_file_is_an_error() -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(config_file="/nonexistent/scissor.yaml")


def test_a_misspelt_scissor_env_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCISSOR_MQTT__OUTBOX_MAX", "5")
    with pytest.raises(SettingsError, match="SCISSOR_MQTT__OUTBOX_MAX: not a setting"):
        load_settings()


@pytest.mark.parametrize(
    "overrides, path",
    [
        ({"mqtt_url": "http://broker"}, "mqtt_url"),
        ({"mqtt_url": "mqtt://broker:70000"}, "mqtt_url"),
        ({"redis_url": "postgres://db"}, "redis_url"),
        ({"backend": "nonsense"}, "backend"),
        ({"device": "gpu"}, "device"),
        ({"port": 0}, "port"),
        ({"camera": {"tau": 1.5}}, "camera.tau"),
        ({"camera": {"fps": float("nan")}}, "camera.fps"),
        ({"api": {"max_question_chars": -1}}, "api.max_question_chars"),
        ({"state": {"extra_key": 1}}, "state.extra_key"),
    ],
)
def test_invalid_values_name_their_key_path(overrides: dict[str, object], path: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, **overrides)
    assert any(line.startswith(path) for line in err.value.lines), err.value.lines


def test_cross_field_rules_refuse_a_password_without_a_user_and_tls_files_without_tls(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MQTT password requires an MQTT username"):
        load_settings(mqtt_url="mqtt://broker", mqtt={"password": "pw"})
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(SettingsError, match="need an mqtts:// URL"):
        load_settings(mqtt_url="mqtt://broker", mqtt={"tls_ca_file": str(ca)})
    with pytest.raises(SettingsError, match="need a rediss:// URL"):
        load_settings(redis_url="redis://h", redis={"tls_ca_file": str(ca)})
    assert load_settings(
        mqtt_url="mqtts://u@broker", mqtt={"tls_ca_file": str(ca), "password": "pw"}
    ).mqtt_enabled


def test_weak_api_tokens_are_refused() -> None:
    for token in ("short", "changeme"):
        with pytest.raises(SettingsError, match="api_token"):
            load_settings(api_token=token)


def test_errors_never_show_secrets_and_redact_urls() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(
            api_token="tiny-secret", mqtt_url="mqtt://bob:hunter2@broker:99999", redis={"password": 12}
        )
    text = str(err.value)
    assert "tiny-secret" not in text and "hunter2" not in text
    assert "api_token (SCISSOR_API_TOKEN) = '***'" in text and "mqtt_url (SCISSOR_MQTT_URL)" in text


def test_a_raw_validation_error_formats_as_one_line_per_key_path() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(port=-1, camera={"capacity_entries": 0})
    lines = format_validation_error(err.value).splitlines()
    assert lines[0] == "invalid settings:" and len(lines) == 3
    assert lines[1].strip().startswith("port (SCISSOR_PORT) = -1:")


def test_the_markdown_table_lists_every_setting_with_its_env_name_and_description() -> None:
    table = settings_markdown_table()
    for name in (
        "SCISSOR_BACKEND",
        "SCISSOR_REDIS_URL",
        "SCISSOR_MQTT_URL",
        "SCISSOR_API_TOKEN",
        "SCISSOR_CAMERA__WINDOW_S",
        "SCISSOR_STATE__SNAPSHOT_INTERVAL_S",
        "SCISSOR_MQTT__PASSWORD",
    ):
        assert f"| `{name}` |" in table
    assert all(row.count("|") >= 4 and not row.endswith("|  |") for row in table.splitlines())


def test_ops_readme_carries_the_generated_settings_table_verbatim() -> None:
    readme = (Path(__file__).resolve().parents[2] / "ops" / "README.md").read_text()
    assert settings_markdown_table().strip() in readme, (
        "regenerate ops/README.md's table (settings_markdown_table)"
    )
