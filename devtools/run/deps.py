"""The servers `make run` needs, Postgres and RabbitMQ: each must answer a real login.
A local Debian-installed server that is stopped is started (`pg_ctlcluster`,
`rabbitmq-server -detached`) and left running; anything else ends with one line saying
what to do."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiormq.exceptions
import asyncpg

from devtools import describe
from devtools.ports import tcp_refusal
from devtools.run.fatal import Fatal, say

START_TIMEOUT = 60.0  # a stopped Postgres/RabbitMQ must answer within this after starting
BOOT_WAIT = 15.0  # a server someone else is starting gets this long to accept a login
PG_ETC = Path("/etc/postgresql")
PG_CLUSTER = "main"  # the cluster Debian's postgresql package creates
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Dependency:
    """A server `make run` needs: how to log in, and how to start a local stopped one."""

    name = ""
    env = ""
    package = ""
    default_port = 0
    logs = ""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or self.default_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS

    def not_installed(self) -> Fatal:
        return Fatal(
            f"{self.name} is not reachable at {self.address} and not installed here: "
            f"apt-get install {self.package}, or set {self.env}"
        )

    async def login(self) -> None:
        raise NotImplementedError

    def refused(self, exc: BaseException) -> bool:
        """True when the server answered and said no: waiting won't help."""
        raise NotImplementedError

    def start_command(self) -> list[str]:
        """The command that starts the installed, stopped server, or Fatal saying why not."""
        raise NotImplementedError


class Postgres(Dependency):
    name, env, package, default_port = "Postgres", "DATABASE_URL", "postgresql", 5432
    logs = "/var/log/postgresql/"

    async def login(self) -> None:
        try:
            conn = await asyncpg.connect(self.url, timeout=5)
        except asyncpg.InvalidCatalogNameError:
            return  # server and credentials are fine; the database is created next
        await conn.close()

    def refused(self, exc: BaseException) -> bool:
        # CannotConnectNow: "the database system is starting up".
        return isinstance(exc, asyncpg.PostgresError) and not isinstance(
            exc, asyncpg.CannotConnectNowError
        )

    def start_command(self) -> list[str]:
        ctl = shutil.which("pg_ctlcluster")
        clusters = sorted(
            (p.parent.parent.name for p in PG_ETC.glob(f"*/{PG_CLUSTER}/postgresql.conf")),
            key=lambda v: [int(n) for n in re.findall(r"\d+", v)],
            reverse=True,
        )
        if ctl is None or not clusters:
            raise self.not_installed()
        ports = {v: _pg_conf_port(PG_ETC / v / PG_CLUSTER / "postgresql.conf") for v in clusters}
        version = next((v for v in clusters if ports[v] == self.port), None)
        if version is None:
            found = ", ".join(f"{v}/{PG_CLUSTER} on port {p}" for v, p in ports.items())
            raise Fatal(
                f"Postgres is not reachable at {self.address}; the cluster installed here "
                f"({found}) uses another port: set DATABASE_URL to it"
            )
        status = subprocess.run(
            [ctl, version, PG_CLUSTER, "status"], capture_output=True, timeout=30, check=False
        )
        if status.returncode == 0:  # 3 = stopped
            conf = PG_ETC / version / PG_CLUSTER
            raise Fatal(
                f"Postgres {version}/{PG_CLUSTER} is running but does not answer at "
                f"{self.address}: check listen_addresses in {conf}, or set DATABASE_URL"
            )
        return [ctl, "--skip-systemctl-redirect", version, PG_CLUSTER, "start"]


def _pg_conf_port(conf: Path) -> int:
    match = re.search(r"^\s*port\s*=\s*(\d+)", conf.read_text(errors="replace"), re.MULTILINE)
    return int(match[1]) if match else 5432


class RabbitMQ(Dependency):
    name, env, package, default_port = "RabbitMQ", "AMQP_URL", "rabbitmq-server", 5672
    logs = "/var/log/rabbitmq/"

    async def login(self) -> None:
        conn = await aio_pika.connect(self.url, timeout=5)
        await conn.close()

    def refused(self, exc: BaseException) -> bool:
        # Bad credentials, or a vhost that doesn't exist (answered with Connection.Close).
        return isinstance(
            exc,
            aiormq.exceptions.ProbableAuthenticationError
            | aiormq.exceptions.AuthenticationError
            | aiormq.exceptions.ConnectionNotAllowed
            | aiormq.exceptions.InvalidFrameError,
        )

    def start_command(self) -> list[str]:
        server = shutil.which("rabbitmq-server", path=SBIN_PATH)
        if server is None:
            raise self.not_installed()
        # A node registered with epmd is running already: starting another would clash.
        if any(n.startswith("rabbit") for n in _epmd_nodes()):
            raise Fatal(
                f"RabbitMQ runs here but does not answer at {self.address} (still starting, "
                "or AMQP_URL names another port than /etc/rabbitmq/rabbitmq.conf)"
            )
        return [server, "-detached"]


def _epmd_nodes() -> list[str]:
    """Erlang node names registered with the local epmd (empty when epmd isn't running)."""
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", 4369), timeout=1) as sock:
            sock.sendall(b"\x00\x01n")  # NAMES_REQ
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return []
    return re.findall(r"name (\S+) at port", data[4:].decode(errors="replace"))


async def probe(dep: Dependency) -> tuple[str, str]:
    """("up" | "down" | "refused" | "starting", detail): TCP first, then a real login."""
    refused = await tcp_refusal(dep.host, dep.port, timeout=2)
    if refused is not None:
        return "down", refused
    try:
        await dep.login()
    except Exception as exc:
        return ("refused" if dep.refused(exc) else "starting"), describe(exc)
    return "up", ""


async def ensure_up(dep: Dependency) -> None:
    """Return once `dep` accepts a login, starting a local stopped server; else Fatal."""
    state, detail = await probe(dep)
    if state == "up":
        return
    if state == "refused":
        raise Fatal(f"{dep.name} at {dep.address} refused the login in {dep.env}: {detail}")
    started = state == "down"
    if started:
        if not dep.local:
            raise Fatal(
                f"{dep.name} is not reachable at {dep.address} ({detail}): "
                f"start it there, or set {dep.env}"
            )
        command = dep.start_command()
        say(f"{dep.name} is not running: starting it ({shlex.join(command)})")
        await start_server(dep, command)
    # Something we didn't start that takes connections but no login is booting, or is not
    # not that server at all: worth a short wait only.
    bound = START_TIMEOUT if started else BOOT_WAIT
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        state, detail = await probe(dep)
        if state == "up":
            return
        if state == "refused":
            raise Fatal(f"{dep.name} at {dep.address} refused the login in {dep.env}: {detail}")
    if started:
        raise Fatal(
            f"{dep.name} did not answer at {dep.address} within {bound:.0f} s after starting "
            f"({detail}); see {dep.logs}"
        )
    raise Fatal(
        f"{dep.name} at {dep.address} takes connections but no login within {bound:.0f} s "
        f"({detail}): is {dep.env} right?"
    )


async def start_server(dep: Dependency, command: list[str]) -> None:
    # Output to a file, not a pipe: a daemon inherits it and would hold a pipe open forever.
    # Own session: a Ctrl-C of `make run` must not reach the server we leave running.
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), START_TIMEOUT)
        except TimeoutError:
            proc.kill()
            raise Fatal(
                f"`{shlex.join(command)}` did not return within {START_TIMEOUT:.0f} s; "
                f"see {dep.logs}"
            ) from None
        if code != 0:
            out.seek(0)
            lines = [ln.strip() for ln in out.read().decode(errors="replace").splitlines()]
            last = next((ln for ln in reversed(lines) if ln), "no output")
            raise Fatal(f"could not start {dep.name}: `{shlex.join(command)}` failed: {last}")
