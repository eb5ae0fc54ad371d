"""`make run`: the whole Belfry system on this machine, in one terminal.

1. Reads the same environment the services read (AMQP_URL, DATABASE_URL, BELFRY_PREFIX,
   <SERVICE>_HOST/_PORT, CLICK_SIGNING_KEYS), with the same defaults.
2. Makes sure Postgres and RabbitMQ answer a real login; a local Debian-installed server
   that is stopped is started, anything else ends with one line saying what to do.
3. Creates the database, applies migrations and declares the broker topology; makes
   sure the dev tenants exist, and Belfry's own channel `belfry-ops` (a `log` channel
   unless someone pointed it elsewhere).
4. Starts every service in SERVICES as a child process, prefixes its output with its
   name, waits for each `/readyz`, and prints URLs that work.
5. Ctrl-C or SIGTERM stops them all (SIGTERM, then SIGKILL after 30 s); if one dies on
   its own the others are stopped and the exit status is non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The repo root on sys.path: `shared` imports even when the editable install is stale.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
import aiohttp
import aiormq.exceptions
import asyncpg

from services.api.console.targets import ConsoleTargets
from shared.auth import create_key, tenant_for_key
from shared.db.migrate import MigrationError, ensure_database, migrate_url
from shared.ingest_tokens import mint_token, parse_keys
from shared.serve import die_with_parent_hook
from shared.settings import CommonSettings, Env, SettingsError, redact_url
from shared.signing import SigningKeys, click_path
from shared.topology import Topology, declare_all


@dataclass(frozen=True, slots=True)
class Service:
    """One child process: `python -m services.<name>`, listening on <NAME>_HOST:<NAME>_PORT."""

    name: str
    default_port: int

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def port_env(self) -> str:
        return f"{self.name.upper()}_PORT"

    @property
    def host_env(self) -> str:
        return f"{self.name.upper()}_HOST"


# Every service `make run` starts, in start order. Adding a service is one line here.
SERVICES: tuple[Service, ...] = (
    Service("ingest", 8080),
    Service("writer", 8081),
    Service("alerting", 8082),
    Service("api", 8083),
)

REPO = Path(__file__).resolve().parent.parent
DEV_KEY_FILE = REPO / "var" / "dev-signing-key"
DEV_TOKEN_KEY_FILE = REPO / "var" / "dev-ingest-token-key"  # INGEST_TOKEN_KEYS when unset
# Dev API keys (tenant -> key) for the demo tenant and Belfry's own alerts; only hashes are
# in the database, so the keys printed in the banner are kept here (0600).
DEV_API_KEYS_FILE = REPO / "var" / "dev-api-keys.json"
DEV_TENANTS = ("demo", "belfry")
RULES_FILE = REPO / "infra" / "alerting" / "rules.yaml"
# Development only: channels may notify receivers on this machine (a webhook on
# 127.0.0.1); the services default to refusing every internal address.
DEV_EGRESS_ALLOW = "127.0.0.0/8,::1/128"
# The channel Belfry's rule pack notifies; created as a `log` channel when missing, so
# Belfry's own alerts show up in the alerting service's output from the first run.
OPS_TENANT, OPS_CHANNEL, OPS_CHANNEL_TYPE = "belfry", "belfry-ops", "log"
# What each variable `make run` supplies means, for the banner.
DEV_SETTINGS = {
    "ALERTING_RULES_FILE": "Belfry's own rule pack (tenant belfry)",
    "ALERTING_EGRESS_ALLOW_CIDRS": "channels may notify receivers on this machine; "
    "development only, never in production",
    "API_PUBLIC_URL": "the ingest: pixel and click URLs the api hands out point here",
    **{
        f"API_{name.upper()}_URL": f"the {name}, as the console reaches it"
        for name in ConsoleTargets().urls()
    },
}
START_TIMEOUT = 60.0  # a stopped Postgres/RabbitMQ must answer within this after starting
BOOT_WAIT = 15.0  # a server someone else is starting gets this long to accept a login
READY_TIMEOUT = 60.0  # every service's /readyz must answer 200 within this
STOP_TIMEOUT = 30.0  # SIGTERM → SIGKILL; the services drain well inside it (README, Guarantees)
LINE_LIMIT = 1 << 20  # longest output line read in one piece
PG_ETC = Path("/etc/postgresql")
PG_CLUSTER = "main"  # the cluster Debian's postgresql package creates
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
COLORS = ("36", "33", "35", "32", "34", "31")  # cyan, yellow, magenta, green, blue, red
DEMO_TENANT, DEMO_EMAIL, DEMO_TARGET = "demo", "hello", "https://example.com/"
EVENTS_SQL = (
    "select kind, tenant_id, email_id, occurred_at from events order by occurred_at desc limit 5"
)


class Fatal(Exception):
    """Stops `make run` with one line on stderr: what is wrong and what to do."""


def say(message: str) -> None:
    print(f"make run: {message}", flush=True)


# --- configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one started service answers."""

    service: Service
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    common: CommonSettings
    signing_keys: str
    dev_key: bool
    endpoints: tuple[Endpoint, ...]
    api_keys: tuple[tuple[str, str], ...] = ()  # (tenant, key) for the banner
    token_keys: str = ""  # INGEST_TOKEN_KEYS: the banner mints the demo's ingest token
    # Variables `make run` gives the services because the user did not set them.
    dev_settings: tuple[tuple[str, str], ...] = ()
    ops_channel_type: str = ""  # what `belfry-ops` is, for the banner

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        # The services' own parser, so defaults and validation can't drift apart.
        common = CommonSettings.from_env("run", environ)
        env = Env(environ)
        raw_keys = env.text("CLICK_SIGNING_KEYS", "")
        dev_key = not raw_keys
        if dev_key:
            raw_keys = dev_signing_key()
        try:
            SigningKeys.parse(raw_keys)
        except SettingsError as exc:
            where = f"{DEV_KEY_FILE} (delete it to get a new one)" if dev_key else "the env"
            raise Fatal(f"{exc}; from {where}") from None
        endpoints = []
        for svc in SERVICES:
            port = env.integer(svc.port_env, svc.default_port, lo=1, hi=65535)
            host = env.text(svc.host_env, "0.0.0.0")
            # A wildcard listener answers on loopback; that is the URL a developer can open.
            probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "*") else host
            endpoints.append(Endpoint(svc, probe_host, port))
        ports = [e.port for e in endpoints]
        if len(set(ports)) != len(ports):
            names = ", ".join(f"{e.service.port_env}={e.port}" for e in endpoints)
            raise Fatal(f"two services would share a port ({names}): give each its own")
        token_keys = env.text("INGEST_TOKEN_KEYS", "") or dev_signing_key(DEV_TOKEN_KEY_FILE)
        try:
            parse_keys(token_keys)
        except SettingsError as exc:
            raise Fatal(f"{exc} (for a dev key, unset it or delete {DEV_TOKEN_KEY_FILE})") from None
        return cls(
            common,
            raw_keys,
            dev_key,
            tuple(endpoints),
            token_keys=token_keys,
            dev_settings=dev_settings(tuple(endpoints), environ),
        )

    def service_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment every service starts with: the user's, the keys, the dev
        settings."""
        return dict(
            environ,
            CLICK_SIGNING_KEYS=self.signing_keys,
            INGEST_TOKEN_KEYS=self.token_keys,
            PYTHONUNBUFFERED="1",
            **dict(self.dev_settings),
        )


def dev_settings(
    endpoints: tuple[Endpoint, ...], environ: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The DEV_SETTINGS values for these endpoints, those the user left unset."""
    values = {
        # Belfry watches itself from the first run: the default rule pack.
        "ALERTING_RULES_FILE": str(RULES_FILE),
        "ALERTING_EGRESS_ALLOW_CIDRS": DEV_EGRESS_ALLOW,
    }
    ingest = next((e for e in endpoints if e.service.name == "ingest"), None)
    if ingest is not None:  # the api's links must reach this ingest, on whatever port
        values["API_PUBLIC_URL"] = ingest.base_url
    console = ConsoleTargets().urls()
    for endpoint in endpoints:  # the console reaches the services, on whatever port
        if console.get(endpoint.service.name, endpoint.base_url) != endpoint.base_url:
            values[f"API_{endpoint.service.name.upper()}_URL"] = endpoint.base_url
    return tuple((k, v) for k, v in values.items() if not environ.get(k))


def dev_signing_key(path: Path = DEV_KEY_FILE) -> str:
    """The persisted dev key (`dev:<secret>`), created once so signed links (and ingest
    tokens, from their own file) survive restarts."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"dev:{secrets.token_urlsafe(32)}"
    # O_EXCL + 0600: a key only this user reads, and two concurrent runs can't both write.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


# --- Postgres and RabbitMQ --------------------------------------------------------------


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


def _why(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


async def probe(dep: Dependency) -> tuple[str, str]:
    """("up" | "down" | "refused" | "starting", detail): TCP first, then a real login."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(dep.host, dep.port), 2)
    except (OSError, TimeoutError) as exc:
        return "down", _why(exc) if str(exc) else "connect timed out"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    try:
        await dep.login()
    except Exception as exc:
        return ("refused" if dep.refused(exc) else "starting"), _why(exc)
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


async def prepare(common: CommonSettings) -> tuple[str, str]:
    """Database + migrations and broker topology; returns a line on each for the log."""
    try:
        created = await ensure_database(common.database_url)
        applied = await migrate_url(common.database_url, create=False)
    except (MigrationError, asyncpg.PostgresError, OSError) as exc:
        raise Fatal(f"migrating {redact_url(common.database_url)} failed: {_why(exc)}") from None
    name = urlsplit(common.database_url).path.lstrip("/")
    db_line = f"database {name}{' created' if created else ''}, " + (
        f"migrations {applied} applied" if applied else "migrations up to date"
    )
    topo = Topology(common.prefix)
    try:
        conn = await aio_pika.connect(common.amqp_url, timeout=5)
        async with conn:
            await declare_all(await conn.channel(), topo)
    except Exception as exc:  # e.g. PRECONDITION_FAILED: a queue exists with other arguments
        raise Fatal(
            f"declaring the topology under prefix {common.prefix!r} failed: {_why(exc)}"
        ) from None
    return (
        db_line,
        f"topology under prefix {topo.prefix!r} declared ({len(topo.spec().queues)} queues)",
    )


async def dev_api_keys(database_url: str) -> tuple[tuple[str, str], ...]:
    """A working API key per dev tenant: the one in DEV_API_KEYS_FILE while the database
    still knows it, else the tenant (if missing) and a new key, written back."""
    try:
        saved = json.loads(DEV_API_KEYS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    keys: dict[str, str] = {}
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            for tenant in DEV_TENANTS:
                key = saved.get(tenant)
                if isinstance(key, str) and await tenant_for_key(conn, key) == tenant:
                    keys[tenant] = key
                    continue
                await conn.execute(
                    "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    tenant,
                    f"{tenant} (make run)",
                )
                keys[tenant] = await create_key(conn, tenant, "make run dev key")
        finally:
            await conn.close()
    except (asyncpg.PostgresError, OSError) as exc:
        raise Fatal(f"creating the dev tenants failed: {_why(exc)}") from None
    if keys != saved:
        DEV_API_KEYS_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = DEV_API_KEYS_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(keys, indent=1) + "\n")
        tmp.chmod(0o600)
        tmp.replace(DEV_API_KEYS_FILE)
    return tuple(keys.items())


async def ops_channel(database_url: str) -> str:
    """The type of the belfry tenant's `belfry-ops`, created as a `log` channel when
    missing. Never replaced: an operator who pointed it elsewhere (API, or
    ALERTING_CHANNELS_FILE) keeps that."""
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            await conn.execute(
                "INSERT INTO alert_channels (tenant_id, name, type, config)"
                " VALUES ($1, $2, $3, '{}') ON CONFLICT DO NOTHING",
                OPS_TENANT,
                OPS_CHANNEL,
                OPS_CHANNEL_TYPE,
            )
            kind = await conn.fetchval(
                "SELECT type FROM alert_channels WHERE tenant_id = $1 AND name = $2",
                OPS_TENANT,
                OPS_CHANNEL,
            )
        finally:
            await conn.close()
    except (asyncpg.PostgresError, OSError) as exc:
        raise Fatal(f"creating the channel {OPS_CHANNEL} failed: {_why(exc)}") from None
    return str(kind)


# --- the services -----------------------------------------------------------------------


class Child:
    """One running service and the task that copies its output, prefixed, to ours."""

    def __init__(self, endpoint: Endpoint, proc: asyncio.subprocess.Process, label: bytes):
        self.endpoint = endpoint
        self.name = endpoint.service.name
        self.proc = proc
        self._label = label
        self.pump = asyncio.create_task(self._pump(), name=f"pump-{self.name}")
        self.exited = asyncio.create_task(proc.wait(), name=f"wait-{self.name}")

    @classmethod
    async def start(cls, endpoint: Endpoint, env: dict[str, str], label: bytes) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            endpoint.service.module,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            limit=LINE_LIMIT,
            # Own session: Ctrl-C reaches only us, so every service is stopped the same way.
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),
        )
        return cls(endpoint, proc, label)

    async def _pump(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        out = sys.stdout.buffer
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:  # EOF; a last line without newline
                line = exc.partial
            except asyncio.LimitOverrunError as exc:  # an overlong line: pass it on in pieces
                line = await stream.read(exc.consumed)
            if not line:
                return
            with contextlib.suppress(BrokenPipeError):  # keep draining: a full pipe blocks it
                out.write(self._label + line + (b"" if line.endswith(b"\n") else b"\n"))
                out.flush()

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)  # ingest with INGEST_WORKERS > 1 has children
            else:
                self.proc.send_signal(sig)


def status(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"


def labels(color: bool) -> dict[str, bytes]:
    width = max(len(s.name) for s in SERVICES)
    out = {}
    for index, svc in enumerate(SERVICES):
        text = svc.name.ljust(width)
        if color:
            text = f"\x1b[{COLORS[index % len(COLORS)]}m{text}\x1b[0m"
        out[svc.name] = f"{text} | ".encode()
    return out


async def wait_ready(children: list[Child]) -> str | None:
    """None once every /readyz answered 200, else why not (after READY_TIMEOUT)."""
    deadline = time.monotonic() + READY_TIMEOUT
    last: dict[str, str] = {c.name: "no answer yet" for c in children}
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(child: Child) -> bool:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{child.endpoint.base_url}/readyz") as resp:
                        if resp.status == 200:
                            return True
                        last[child.name] = f"{resp.status} {(await resp.text())[:300]}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last[child.name] = _why(exc)
                await asyncio.sleep(0.25)
            return False

        results = await asyncio.gather(*(one(c) for c in children))
    failing = [
        f"{c.name}: {last[c.name]}" for c, ok in zip(children, results, strict=True) if not ok
    ]
    if failing:
        return f"not ready after {READY_TIMEOUT:.0f} s: " + "; ".join(failing)
    return None


def banner(config: Config) -> str:
    common = config.common
    by_name = {e.service.name: e for e in config.endpoints}
    lines = ["", "Belfry is running. Try:"]
    ingest = by_name.get("ingest")
    if ingest is not None:
        keys = SigningKeys.parse(config.signing_keys)
        base = ingest.base_url
        body = json.dumps(
            [
                {"type": "open", "tenant": DEMO_TENANT, "email_id": DEMO_EMAIL},
                {
                    "type": "click",
                    "tenant": DEMO_TENANT,
                    "email_id": DEMO_EMAIL,
                    "url": DEMO_TARGET,
                },
            ],
            separators=(",", ":"),
        )
        lines += [
            f"  open pixel    {base}/{DEMO_TENANT}/pixel/{DEMO_EMAIL}.gif",
            f"  signed click  {base}{click_path(keys, DEMO_TENANT, DEMO_EMAIL, DEMO_TARGET)}",
            f"  batch track   curl -si {base}/v1/track -H 'Content-Type: application/json' "
            f"{_token_header(config)}-d '{body}'",
        ]
    api, alerting, keys = by_name.get("api"), by_name.get("alerting"), dict(config.api_keys)
    if api is not None and DEMO_TENANT in keys:
        auth = f"-H 'Authorization: Bearer {keys[DEMO_TENANT]}'"
        lines += [
            f"  dashboard     {api.base_url}/{DEMO_TENANT}/dashboard#key={keys[DEMO_TENANT]}",
            f"  alerts view   {api.base_url}/{DEMO_TENANT}/console/alerts#key={keys[DEMO_TENANT]}",
            f"  create email  curl -s -X POST {api.base_url}/{DEMO_TENANT}/emails {auth} "
            """-H 'Content-Type: application/json' -d '{"subject": "hi"}'""",
            f"  stats         curl -s {api.base_url}/{DEMO_TENANT}/stats {auth}",
        ]
    if api is not None and "belfry" in keys:  # Belfry's operators: tenant belfry's key
        lines.append(f"  health view   {api.base_url}/console/health#key={keys['belfry']}")
    if alerting is not None and "belfry" in keys:
        lines.append(
            f"  Belfry alerts curl -s {alerting.base_url}/api/v1/alerts "
            f"-H 'Authorization: Bearer {keys['belfry']}'"
        )
    lines += [
        f"  stored rows   psql {shlex.quote(redact_url(common.database_url))} "
        f"-c {shlex.quote(EVENTS_SQL)}",
        *_ops_lines(config, alerting),
    ]
    if ingest is not None:
        lines += _metric_lines(config, ingest.base_url)
    if config.dev_settings:
        lines.append("Set by make run for development (set them yourself to change):")
        lines += [f"  {k}={v}  # {DEV_SETTINGS[k]}" for k, v in config.dev_settings]
    lines.append("Probes and metrics:")
    width = max(len(e.service.name) for e in config.endpoints)
    for e in config.endpoints:
        lines.append(
            f"  {e.service.name.ljust(width)}  {e.base_url}/readyz  {e.base_url}/metrics  "
            "(also /livez /health /health/detailed)"
        )
    lines += ["Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def _ops_lines(config: Config, alerting: Endpoint | None) -> list[str]:
    """Where Belfry's own alerts go, and how to send them elsewhere."""
    if not config.ops_channel_type or alerting is None:
        return []
    where = (
        "a JSON line in the alerting output"
        if config.ops_channel_type == OPS_CHANNEL_TYPE
        else f"a {config.ops_channel_type} channel"
    )
    key = dict(config.api_keys).get(OPS_TENANT, "<belfry key>")
    return [
        f"Belfry's own alerts go to channel {OPS_CHANNEL} ({where}); point it elsewhere with",
        f"  curl -s -X PUT {alerting.base_url}/api/v1/channels/{OPS_CHANNEL} "
        f"-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        """-d '{"type": "webhook", "config": {"url": "http://127.0.0.1:9000/hook"}}'""",
    ]


def _metric_lines(config: Config, base: str) -> list[str]:
    """The demo tenant's metrics in through each protocol, ready to paste (one token)."""
    keys = parse_keys(config.token_keys)
    if keys is None:
        return []
    token = mint_token(keys, DEMO_TENANT)
    sample = '[{"name":"queue_depth","value":42,"labels":{"queue":"mail"}}]'
    return [
        f'Send metrics as tenant {DEMO_TENANT} (README "Send your metrics"):',
        f"  samples       curl -si {base}/v1/samples -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer {token}' -d '{sample}'",
        f"  OTel SDK      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT={base}/v1/metrics "
        f"OTEL_EXPORTER_OTLP_METRICS_HEADERS=Authorization=Bearer%20{token}",
        f'  Prometheus    remote_write: [{{url: "{base}/api/v1/write", '
        f'authorization: {{credentials: "{token}"}}}}]',
    ]


def _token_header(config: Config) -> str:
    """The demo tenant's ingest token as a curl header (a fresh one each banner)."""
    keys = parse_keys(config.token_keys)
    if keys is None:
        return ""
    return f"-H 'Authorization: Bearer {mint_token(keys, DEMO_TENANT)}' "


async def supervise(config: Config) -> int:
    """Start the services, watch them, stop them all; the exit status of `make run`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    env = config.service_env(os.environ)
    label = labels(color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    children: list[Child] = []
    code = 1
    try:
        for e in config.endpoints:
            children.append(await Child.start(e, env, label[e.service.name]))
        say(
            "started "
            + ", ".join(f"{c.name} (pid {c.proc.pid}, :{c.endpoint.port})" for c in children)
        )
        code = await watch(config, children, stop)
    finally:
        clean = await stop_all(children, stop)
    return code if clean else 1


async def watch(config: Config, children: list[Child], stop: asyncio.Event) -> int:
    """Until Ctrl-C/SIGTERM (0), a service exiting on its own or never getting ready (1)."""
    started = time.monotonic()
    stopping = asyncio.create_task(stop.wait())
    died = asyncio.create_task(first_exit(children))
    ready = asyncio.create_task(wait_ready(children))
    try:
        await asyncio.wait({stopping, died, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not died.done() and not stopping.done():
            problem = ready.result()
            if problem:
                say(problem)
                return 1
            say(f"all services ready in {time.monotonic() - started:.1f} s")
            print(banner(config), flush=True)
            await asyncio.wait({stopping, died}, return_when=asyncio.FIRST_COMPLETED)
        if died.done():
            child = died.result()
            say(f"{child.name} exited on its own ({status(child.proc.returncode)}); stopping")
            return 1
        say("stopping (SIGTERM to every service; Ctrl-C again kills them)")
        return 0
    finally:
        for task in (stopping, died, ready):
            task.cancel()


async def check_ports(config: Config) -> None:
    """Fatal when a service's port already answers: it would fail to bind, less clearly."""
    for e in config.endpoints:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(e.host, e.port), 1)
        except (OSError, TimeoutError):
            continue
        writer.close()
        env = e.service.port_env
        raise Fatal(f"port {e.port} ({env}) is in use: stop what listens there, or set {env}")


async def first_exit(children: list[Child]) -> Child:
    done, _ = await asyncio.wait([c.exited for c in children], return_when=asyncio.FIRST_COMPLETED)
    return next(c for c in children if c.exited in done)


async def stop_all(children: list[Child], stop: asyncio.Event) -> bool:
    """SIGTERM every running service, wait up to STOP_TIMEOUT (or a second Ctrl-C), then
    SIGKILL what is left. Returns after their last output line was copied: True when every
    service stopped cleanly (status 0, or SIGTERM before it installed its handler)."""
    if not children:
        return True
    stop.clear()
    for child in children:
        child.terminate()
    all_exited = asyncio.gather(*(c.exited for c in children))
    again = asyncio.create_task(stop.wait())
    either: list[asyncio.Future[Any]] = [all_exited, again]
    await asyncio.wait(either, timeout=STOP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    again.cancel()
    for child in children:
        if child.proc.returncode is None:
            say(f"{child.name} did not stop: killing it")
            child.terminate(signal.SIGKILL)
    await all_exited
    await asyncio.wait([c.pump for c in children], timeout=5)
    say("stopped: " + ", ".join(f"{c.name} ({status(c.proc.returncode)})" for c in children))
    return all(c.proc.returncode in (0, -signal.SIGTERM) for c in children)


async def main() -> int:
    # Our own lines say what failed; the client libraries' reconnect chatter would repeat it.
    for noisy in ("aio_pika", "aiormq", "asyncpg"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        config = Config.from_env(os.environ)
        if config.dev_key:
            kid = SigningKeys.parse(config.signing_keys).active
            say(
                f"CLICK_SIGNING_KEYS is unset: using the dev key {kid!r} from "
                f"{DEV_KEY_FILE.relative_to(REPO)} (never use it in production)"
            )
        await check_ports(config)
        common = config.common
        deps: list[Dependency] = [Postgres(common.database_url), RabbitMQ(common.amqp_url)]
        results = await asyncio.gather(*(ensure_up(d) for d in deps), return_exceptions=True)
        problems = [r for r in results if isinstance(r, BaseException)]
        for problem in problems:
            if not isinstance(problem, Fatal):
                raise problem
            print(f"make run: {problem}", file=sys.stderr)
        if problems:
            return 1
        say("  ".join(f"{d.name} up at {d.address}." for d in deps))
        for line in await prepare(common):
            say(line)
        config = replace(
            config,
            api_keys=await dev_api_keys(common.database_url),
            ops_channel_type=await ops_channel(common.database_url),
        )
        return await supervise(config)
    except (Fatal, SettingsError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:  # Ctrl-C before the services started: nothing to stop
        sys.exit(130)
