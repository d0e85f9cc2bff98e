"""Real redis-server, mosquitto and prometheus subprocesses on free loopback ports for tests and benchmarks;
never a mock."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

from harness.ports import free_port

READY_TIMEOUT_S = 15.0


class ServerNotReady(RuntimeError):
    """A server process exited or did not answer within the timeout; the message ends with its log tail."""


class Server:
    """One server subprocess with a fixed port, so it can be killed and restarted on the same address.

    Subclasses give `command()` and `probe()`; `start()` waits until `probe()` succeeds.
    """

    name = "server"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.dir = Path(tempfile.mkdtemp(prefix=f"scissor-{self.name}-"))
        self.log_path = self.dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """Return the argv that starts the server (subclasses)."""
        raise NotImplementedError

    def probe(self) -> bool:
        """Return True once the server answers its protocol (subclasses)."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start the subprocess and wait until it answers. Raises ServerNotReady on failure."""
        if self.running:
            return
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerNotReady(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            if self._safe_probe():
                return
            time.sleep(0.05)
        self.kill()
        raise ServerNotReady(f"{self.name} not ready after {timeout_s} s: {self.log_tail()}")

    def _safe_probe(self) -> bool:
        try:
            return self.probe()
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (a crash: no clean shutdown) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM the server, waiting up to 10 s before SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Kill the server if it runs, then start it again on the same port."""
        self.kill()
        self.start(timeout_s)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        """Return the end of the server's combined stdout/stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exchange(host: str, port: int, payload: bytes, reply_bytes: int) -> bytes:
    with socket.create_connection((host, port), timeout=1.0) as sock:
        sock.sendall(payload)
        data = b""
        while len(data) < reply_bytes:
            chunk = sock.recv(reply_bytes - len(data))
            if not chunk:
                break
            data += chunk
        return data


class RedisServer(Server):
    """redis-server without persistence, optionally with `requirepass`."""

    name = "redis"

    def __init__(self, port: int | None = None, *, password: str | None = None) -> None:
        super().__init__(port)
        self.password = password

    def command(self) -> list[str]:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        argv += ["--dir", str(self.dir), "--protected-mode", "no"]
        return argv + (["--requirepass", self.password] if self.password else [])

    def probe(self) -> bool:
        reply = _exchange(self.host, self.port, b"PING\r\n", 7)
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    @property
    def url(self) -> str:
        """`redis://[:password@]127.0.0.1:<port>/0`."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"


# MQTT 3.1.1 CONNECT (clean session, keepalive 60, client id "probe") and DISCONNECT.
_MQTT_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"probe"
_MQTT_DISCONNECT = bytes([0xE0, 0])


class MosquittoServer(Server):
    """mosquitto 2 on one loopback listener; anonymous unless a user is given; optionally persistent."""

    name = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        persistent: bool = False,
    ) -> None:
        super().__init__(port)
        self.username, self.password, self.persistent = username, password, persistent

    def command(self) -> list[str]:
        conf = [f"listener {self.port} {self.host}", "log_dest stdout", "log_type error"]
        if self.persistent:  # sessions and queued QoS-1 messages survive a kill (saved every second)
            self.dir.chmod(0o777)
            conf += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        else:
            conf.append("persistence false")
        if self.username and self.password:
            passwd = self.dir / "passwd"
            subprocess.run(
                ["mosquitto_passwd", "-b", "-c", str(passwd), self.username, self.password], check=True
            )
            # Run as root, mosquitto drops to its own user, which must be able to read the file.
            self.dir.chmod(0o755)
            passwd.chmod(0o644)
            conf += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            conf.append("allow_anonymous true")
        path = self.dir / "mosquitto.conf"
        path.write_text("\n".join(conf) + "\n")
        return ["mosquitto", "-c", str(path)]

    def probe(self) -> bool:
        reply = _exchange(self.host, self.port, _MQTT_CONNECT + _MQTT_DISCONNECT, 4)
        return len(reply) == 4 and reply[0] == 0x20  # CONNACK, accepted or not: the broker is up

    @property
    def url(self) -> str:
        """`mqtt://[user:password@]127.0.0.1:<port>`."""
        auth = f"{self.username}:{self.password}@" if self.username and self.password else ""
        return f"mqtt://{auth}{self.host}:{self.port}"


class PrometheusServer(Server):
    """Prometheus scraping `targets` ("host:port") every second, storing in a temporary directory."""

    name = "prometheus"

    def __init__(
        self, targets: list[str], port: int | None = None, *, metrics_path: str = "/metrics"
    ) -> None:
        super().__init__(port)
        self.targets, self.metrics_path = targets, metrics_path

    def command(self) -> list[str]:
        conf = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "scissor",
                    "metrics_path": self.metrics_path,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        path = self.dir / "prometheus.yml"
        path.write_text(json.dumps(conf))  # JSON is YAML
        return [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
        ]

    def probe(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as reply:
            return bool(reply.status == 200)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{self.host}:{self.port}"

    def query(self, expr: str) -> list[Any]:
        """Evaluate a PromQL instant query and return `data.result` ([time, value] for a scalar).

        Raises:
            ValueError: Prometheus refused the expression (its error type and message).
        """
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=5.0) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise ValueError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        return list(body["data"]["result"])

    def wait_for_scrape(self, timeout_s: float = 20.0) -> None:
        """Wait until every target has been scraped successfully (the first scrape takes about 5 s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.query("up == 1")) >= len(self.targets):
                return
            time.sleep(0.25)
        raise ServerNotReady(
            f"prometheus did not scrape {self.targets} within {timeout_s} s: {self.log_tail()}"
        )
