"""docker-compose.yml parses and is wired: images or builds, health checks, secrets, settings the app knows,
docs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.settings import env_names
from harness.servers import MosquittoServer

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
OPS_README = (ROOT / "ops" / "README.md").read_text()
EXAMPLE_ENV = (ROOT / "ops" / "example.env").read_text()
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(:?[-?][^}]*)?\}")
ONE_SHOT = {"camera-init"}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_prometheus_is_published_on_loopback_only_and_without_the_lifecycle_api() -> None:
    prometheus = SERVICES["prometheus"]
    assert not any("lifecycle" in arg for arg in prometheus["command"]), "/-/quit and /-/reload need no auth"
    for port in prometheus.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), (
            f"Prometheus has no login: publish on loopback only ({port})"
        )


def test_ops_readme_answers_the_decoder_isolation_question() -> None:
    section = OPS_README.split("## Decoder isolation", 1)[1].split("\n## ", 1)[0]
    for topic in ("What runs where", "exploited decoder", "SCISSOR_API_TOKEN", "SCISSOR_REDIS__PASSWORD"):
        assert topic in section, topic
    for mitigation in (
        "separate decoder process",
        "read-only root filesystem",
        "cap_drop",
        "seccomp",
        "network",
    ):
        assert mitigation in section, mitigation
    assert "not built yet" in section, "say plainly what is only recommended"


# An exact release: 1.2.3 with an optional v and suffix (redis:7.2.11-alpine, prom/prometheus:v2.53.3), or a
# digest; never a floating tag such as 7.2-alpine, bookworm-slim or latest.
EXACT = re.compile(r"(:v?\d+\.\d+\.\d+(-[\w.]+)?|@sha256:[0-9a-f]{64})$")


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "build" not in s))
def test_every_pulled_image_is_pinned_to_an_exact_version(name: str) -> None:
    assert EXACT.search(SERVICES[name]["image"]), SERVICES[name]["image"]


@pytest.mark.parametrize("dockerfile", ["ops/Dockerfile", "ops/camera/Dockerfile"])
def test_every_base_image_is_pinned_to_an_exact_version(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    bases = [args.get(b.strip("${}"), b) for b in re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)]
    assert bases and all(re.search(r":\d+(\.\d+)+(-[\w.-]+)?$|@sha256:", b) for b in bases), bases


def test_compose_names_the_six_services_of_a_deployment() -> None:
    assert {"app", "redis", "mosquitto", "prometheus", "grafana", "camera"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_or_a_build_whose_dockerfile_exists(name: str) -> None:
    service = SERVICES[name]
    assert "image" in service or "build" in service
    if "build" in service:
        build = service["build"]
        context = ROOT / (build if isinstance(build, str) else build["context"])
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context / dockerfile).is_file(), context / dockerfile
    if "image" in service and "build" not in service:
        assert re.search(r":[\w.-]+$", service["image"]) and not service["image"].endswith(":latest"), (
            "pin images"
        )


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy(name: str) -> None:
    assert SERVICES[name]["healthcheck"]["test"]
    assert SERVICES[name]["restart"] == "unless-stopped"


def test_dependencies_name_existing_services_and_wait_for_health() -> None:
    for name, service in SERVICES.items():
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert cond["condition"] in {"service_healthy", "service_started"}
    assert all(
        SERVICES["app"]["depends_on"][d]["condition"] == "service_healthy" for d in ("redis", "mosquitto")
    )


def test_named_volumes_are_declared_and_bind_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} missing"
            else:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} not declared"
    for secret in SERVICES["prometheus"].get("secrets", []):
        assert secret in COMPOSE["secrets"]


def test_secrets_are_required_never_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for var in ("SCISSOR_API_TOKEN", "REDIS_PASSWORD", "MQTT_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        uses = [m.group(2) or "" for m in INTERPOLATION.finditer(text) if m.group(1) == var]
        assert uses and all(use.startswith(":?") for use in uses), f"{var}: {uses}"


def test_app_is_wired_to_redis_mqtt_and_listens_on_the_scraped_port() -> None:
    env = env_of(SERVICES["app"])
    assert env["SCISSOR_REDIS_URL"].startswith("redis://redis:")
    assert env["SCISSOR_MQTT_URL"].startswith("mqtt://mosquitto:")
    assert env["SCISSOR_HOST"] == "0.0.0.0"
    prometheus = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    app_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "scissor")
    assert app_job["static_configs"][0]["targets"] == [f"app:{env['SCISSOR_PORT']}"]


def test_every_scissor_variable_compose_sets_is_a_setting_the_app_accepts() -> None:
    known = {env for env, _, _ in env_names()}
    for name, service in SERVICES.items():
        for var in env_of(service):
            if var.startswith("SCISSOR_") and name == "app":
                assert var in known, f"{var} is not a setting: `scissor serve` would refuse to start"


def test_every_setting_the_app_reads_is_documented() -> None:
    missing = [env for env, _, _ in env_names() if f"`{env}`" not in OPS_README]
    assert not missing, f"document in ops/README.md: {missing}"


def test_every_variable_compose_interpolates_is_in_example_env() -> None:
    used = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    listed = set(re.findall(r"^(\w+)=", EXAMPLE_ENV, flags=re.MULTILINE))
    assert {var for var, _ in used} <= listed


def test_every_scissor_metric_is_documented() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from agent.outputs.metrics import Metrics
    from agent.outputs.scrape import CameraScrape, ServiceScrape

    metrics = Metrics()
    metrics.watch_camera("c")
    metrics.watch_rule("c", "r")
    metrics.set_backend("tiny", "cpu", 8)
    metrics.set_scrape_source(
        lambda: ServiceScrape(cameras=[CameraScrape("c", up=True, drops={"x": 1}, last_frame_wall_time=1.0)])
    )
    names = {f.name for f in text_string_to_metric_families(metrics.render()[0].decode())}
    for name in sorted(n for n in names if n.startswith("scissor_") and not n.endswith("_created")):
        assert re.search(rf"`{name}(_total|_info)?`", OPS_README), f"{name} missing from ops/README.md"


def test_shipped_mosquitto_config_refuses_anonymous_clients_and_accepts_the_password_file_user() -> None:
    if shutil.which("mosquitto_passwd") is None or shutil.which("mosquitto_sub") is None:
        pytest.fail("mosquitto and mosquitto-clients are required")
    broker = MosquittoServer()
    broker.dir.chmod(0o755)  # run as root, mosquitto drops to its own user, which must read these files
    passwd, data = broker.dir / "passwd", broker.dir / "data"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "scissor", "s3cret-pw"], check=True)
    passwd.chmod(0o644)
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "mosquitto")
    conf = (ROOT / "ops" / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {broker.port} 127.0.0.1")
    conf = conf.replace("/mosquitto/auth/passwd", str(passwd)).replace("/mosquitto/data/", f"{data}/")
    conf = conf.replace("/mosquitto/auth/acl", str(ROOT / "ops" / "mosquitto" / "acl"))
    (broker.dir / "shipped.conf").write_text(conf)
    broker.command = lambda: ["mosquitto", "-c", str(broker.dir / "shipped.conf")]  # type: ignore[method-assign]
    broker.start()
    try:

        def sub(*auth: str) -> int:
            cmd = [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(broker.port),
                *auth,
                "-t",
                "$SYS/broker/uptime",
                "-C",
                "1",
                "-W",
                "3",
            ]
            return subprocess.run(cmd, capture_output=True, timeout=10, check=False).returncode

        assert sub("-u", "scissor", "-P", "s3cret-pw") == 0
        assert sub() != 0
        assert sub("-u", "scissor", "-P", "wrong") != 0
    finally:
        broker.close()


def test_redis_is_pinned_at_or_above_the_cve_2025_49844_fix() -> None:
    """Redis 7.2.11 fixed CVE-2025-49844 (a Lua use-after-free reachable by any client that can EVAL)."""
    image = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]["image"]
    version = tuple(int(p) for p in re.match(r"redis:(\d+)\.(\d+)\.(\d+)", image).groups())  # type: ignore[union-attr]
    assert version >= (7, 2, 11), image
