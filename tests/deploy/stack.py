"""One Compose project of the repository's docker-compose.yml, driven from the host."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

from tests.deploy.engine import (
    HERE, REPO, TIMINGS, Compose, DeployTestError, Engine, dockerfile_base_image, run,
)
from tests.helpers import free_port

COMPOSE_FILE = REPO / "docker-compose.yml"
HTTP_TIMEOUT = 30


def compose_image() -> str:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]["parent"]["image"]


def ensure_postgres_image(engine: Engine) -> str:
    """Build a stand-in under the compose file's postgres tag unless the real image is there.

    An earlier stand-in is rebuilt (from the build cache when nothing changed).
    """
    tag = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["postgres"]["image"]
    label = engine.docker("image", "inspect", tag, "--format",
                          '{{index .Config.Labels "org.werss-cascade.stand-in"}}', check=False)
    if label.returncode != 0 or label.stdout.strip():
        engine.docker("build", "--build-arg", f"BASE={dockerfile_base_image()}", "-t", tag,
                      str(HERE / "postgres-standin"), timeout=1800)
        return f"built the stand-in {tag}"
    return f"{tag} present (not a stand-in)"


def build_image(compose: Compose) -> str:
    """Build the compose file's image (both services share it) and return its name."""
    with tempfile.TemporaryDirectory() as workdir:
        env_file = Path(workdir) / "build.env"      # never the user's .env beside the file
        env_file.write_text("WERSS_SECRET_KEY=build-only\nWERSS_ADMIN_PASSWORD=build-only\n")
        run([*compose.command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "build",
             "parent"], env=compose.env, timeout=1800)
    return compose_image()


class Stack:
    """A private Compose project: its own name, .env file, host port and volumes."""

    def __init__(self, compose: Compose, workdir: Path, **settings: str):
        self.compose_cli = compose
        self.project = f"werss-ct-{secrets.token_hex(4)}"
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.settings = {
            "WERSS_SECRET_KEY": secrets.token_urlsafe(48),
            "WERSS_ADMIN_PASSWORD": self.password,
            "WERSS_PORT": str(self.port),
            **settings,
        }
        self.env_file = workdir / f"{self.project}.env"
        self.write_env()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()

    def write_env(self, **more: str) -> None:
        """Write the project's .env; `more` is appended, as the docs have users do."""
        self.settings.update(more)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))

    @contextmanager
    def phase(self, name: str):
        """Time a step of the flow for the summary (cold vs warm runs)."""
        started = time.monotonic()
        yield
        TIMINGS.record(f"[{self.compose_cli.name}] {name}", started)

    def compose(self, *args: str, timeout: float = 600, check: bool = True,
                input: bytes | None = None) -> subprocess.CompletedProcess:
        return run([*self.compose_cli.command, "-p", self.project, "-f", str(COMPOSE_FILE),
                    "--env-file", str(self.env_file), *args],
                   env=self.compose_cli.env, timeout=timeout, check=check, input=input)

    def logs(self) -> str:
        result = self.compose("--profile", "child", "--profile", "postgres", "logs",
                              "--no-color", "--tail", "60", check=False, timeout=120)
        return result.stdout.decode("utf-8", "replace")

    def down(self) -> None:
        self.compose("--profile", "child", "--profile", "postgres", "down", "-v",
                     "--remove-orphans", check=False, timeout=300)

    def service_healthcheck(self, service: str) -> list[str]:
        """The compose file's health check command of a service, as an argv list."""
        test = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]["healthcheck"]
        assert test["test"][0] == "CMD", test
        return test["test"][1:]

    def running_services(self) -> list[str]:
        listed = self.compose("--profile", "child", "--profile", "postgres", "ps",
                              "--services", "--filter", "status=running")
        return sorted(listed.stdout.decode().split())

    def gateway(self) -> str:
        """The host's address on the project's network, as the containers see it."""
        result = run(["docker", "network", "inspect", f"{self.project}_default", "--format",
                      "{{range .IPAM.Config}}{{.Gateway}} {{end}}"], env=self.compose_cli.env)
        return result.stdout.decode().split()[0]

    def wait_for(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = condition()
            except requests.RequestException:
                value = None
            if value:
                return value
            time.sleep(1)
        raise DeployTestError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                              f"--- compose logs ---\n{self.logs()}")

    def wait_healthy(self, timeout: float = 120) -> None:
        self.wait_for(lambda: requests.get(f"{self.base_url}/healthz", timeout=5).status_code
                      == 200, timeout, "the parent's /healthz")

    def login(self) -> None:
        answer = requests.post(f"{self.base_url}/api/v1/auth/login", timeout=HTTP_TIMEOUT,
                               json={"username": "admin", "password": self.password})
        assert answer.status_code == 200, answer.text
        self.http.headers["Authorization"] = "Bearer " + answer.json()["data"]["access_token"]

    def api(self, method: str, path: str, status: int = 200, **kwargs):
        answer = self.http.request(method, f"{self.base_url}{path}", timeout=HTTP_TIMEOUT,
                                   **kwargs)
        assert answer.status_code == status, (method, path, answer.status_code, answer.text)
        return answer.json()["data"]
