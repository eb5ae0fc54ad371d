"""Schemathesis against the OpenAPI document of every HTTP service (alerting, api, ingest,
writer), each served by the real service on the real RabbitMQ and Postgres, with
`--checks all`.

Each service runs as in production (`python -m services.<name>`, a child process with
this test's database and prefix); its document is fetched from it (so the route that
serves it is tested too), and the `st` command line runs against it. Any 5xx, any answer
outside the document and any garbage accepted fails the test, with a `curl` line per
failing request and the service's error log lines.

Authenticated routes are exercised with the key of one tenant (`acme`); a second tenant's
key (`rival`) lets `object_level_authorization` try to read acme's objects with it.

Bounded and reproducible by default: `FUZZ_MAX_EXAMPLES` cases per operation and phase
(default 15), a fixed `FUZZ_SEED` (default 13) with derandomized generation and no example
database. For a longer local run: `FUZZ_MAX_EXAMPLES=500 FUZZ_SEED=random`; more `st run`
options in `FUZZ_ST_ARGS`. The report of the last run is `schemathesis.log` in the test's
tmp_path.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.children import run_to_end
from services.api.tenants import create_tenant
from shared.ingest_tokens import mint_token
from shared.openapi_gen import PROBES
from shared.signing import SigningKeys
from tests.support.processes import Proc

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "15"))
SEED = os.environ.get("FUZZ_SEED", "13")
# Generous: the whole run is bounded by MAX_EXAMPLES, this only stops a hung one.
RUN_TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT_SECONDS", str(120 + 12 * MAX_EXAMPLES)))

TENANT, RIVAL = "acme", "rival"
SIGNING_KEYS = "k2:fuzz-secret-0123456789,k1:older-secret-0123456789"
INGEST_TOKEN_KEYS = "t1:fuzz-ingest-token-secret-0123"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(RUN_TIMEOUT + 60)]


@dataclass(frozen=True)
class Keys:
    tenant: str
    rival: str


@pytest.fixture
async def keys(db: asyncpg.Connection) -> Keys:
    return Keys(await create_tenant(db, TENANT, "Acme"), await create_tenant(db, RIVAL, "Rival"))


def _auth_file(tmp_path: Path, keys: Keys) -> Path:
    """Web Fuzzing Commons auth: the first user makes every request; the others are the
    peers `object_level_authorization` replays a successful read as."""
    users = [
        {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {key}"}]}
        for name, key in ((TENANT, keys.tenant), (RIVAL, keys.rival))
    ]
    path = tmp_path / "fuzz-auth.json"
    path.write_bytes(orjson.dumps({"auth": users}))
    return path


# Values that broke a service before (issue 13): now and then one replaces a generated
# query or path string, number, or one of these body fields. Schemathesis puts each where
# it fits: into positive cases only where the document admits it, negative ones elsewhere.
NASTY = [
    "a\\u0000b",
    "\\u0000",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-05",
    "9999-12-30",
    "9999-12-31T23:59:59-14:00",
    "253402300800",
    "HTTPS://example.com/offer",
    "http://127.1/",
    "(a+)+$",
    "((a|a)*)*b",
    "1e16",
    "-1e16",
    "1.7976931348623157e308",
    "-0.0",
    "9007199254740993",
]
NASTY_BODY_FIELDS = (
    *("subject", "recipient", "links.[*]", "retention_months"),  # api
    # Not a rule's metric, op, threshold, window or for: schemathesis checks a value
    # against its field alone, and beside a condition any of them is refused.
    *("name", "author", "comment", "by", "condition", "clear_threshold"),
    *("starts_at", "ends_at", "duration", "matchers.[*].value"),  # alerting
    *("[*].ts", "[*].url", "[*].ua", "[*].email_id", "[*].tenant", "[*].ip"),  # ingest
)


def _nasty_values() -> str:
    """The TOML list: numbers as numbers, the rest as (escaped) strings."""

    def toml(value: str) -> str:
        try:
            float(value)
        except ValueError:
            return f'"{value}"'
        return value

    return ", ".join(dict.fromkeys(toml(v) for v in NASTY))


def _config(tmp_path: Path, extra: str = "", *, parameters: dict[str, str] | None = None) -> Path:
    """schemathesis.toml: what the command line cannot say (`extra`: more TOML)."""
    bindings = {
        **{f"body.{f}": '{dictionary = "nasty", probability = 0.2}' for f in NASTY_BODY_FIELDS},
        **(parameters or {}),
    }
    path = tmp_path / "schemathesis.toml"
    path.write_text(
        # schemathesis' default list plus 413, how a service rightly refuses a body over
        # its size limit (a 5xx fails not_a_server_error).
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413",'
        ' "415", "422", "428", "429", "5xx"]\n'
        f"[dictionaries.nasty]\nvalues = [{_nasty_values()}]\n"
        f'[dictionaries.tenants]\nvalues = ["{TENANT}"]\n'
        "[generation.dictionaries]\n"
        'string = {dictionary = "nasty", probability = 0.2}\n'
        'number = {dictionary = "nasty", probability = 0.2}\n'
        "[parameters]\n" + "".join(f'"{k}" = {v}\n' for k, v in bindings.items()) + extra
    )
    return path


async def run_schemathesis(
    service: Proc,
    schema_path: str,
    tmp_path: Path,
    *,
    config: Path,
    auth: Path | None = None,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> None:
    """`st run --checks all` against `service`; fails with the report and the service's
    error log lines."""
    args = [
        "run",
        f"{service.url}{schema_path}",
        "--url",
        service.url,
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        *(["--auth-wfc", str(auth)] if auth else []),
        *(extra or []),
        # More for a local run, e.g. `--include-path-regex stats --phases fuzzing`.
        *shlex.split(os.environ.get("FUZZ_ST_ARGS", "")),
    ]
    # Deterministic generation implies no example database (no state between runs).
    args += (
        ["--generation-database", "none"]
        if SEED == "random"
        else ["--seed", SEED, "--generation-deterministic"]
    )
    st = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), *args]
    log = tmp_path / "schemathesis.log"
    full_env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", **(env or {})}
    run = await run_to_end("schemathesis", st, env=full_env, log=log, timeout=RUN_TIMEOUT)
    if run.exit_code != 0:
        ended = f"still running after {RUN_TIMEOUT:.0f} s" if run.killed else run.status()
        pytest.fail(
            f"schemathesis against {service.url} failed ({ended}):\n"
            f"{_shorten(log.read_text(errors='replace'))}\n"
            f"--- service log, errors ---\n{_errors(service.log)}",
            pytrace=False,
        )


def _shorten(text: str, width: int = 2000) -> str:
    """The report with each line cut to `width` (a fuzzed URL can be 20 kB)."""
    return "\n".join(
        line if len(line) <= width else line[:width] + " [...]" for line in text.splitlines()
    )


def _errors(log: Path) -> str:
    """The service's error lines (JSON logs, shared/jsonlog.py): where a 5xx came from."""

    def is_error(line: str) -> bool:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            return "Traceback" in line  # a crash before logging was set up
        return isinstance(doc, dict) and (doc.get("level") in ("error", "critical") or "exc" in doc)

    return _shorten("\n".join(filter(is_error, log.read_text(errors="replace").splitlines())))


async def answered(service: Proc) -> dict[tuple[str, str, str], float]:
    """(method, route template, status) -> requests the service answered so, from its
    /metrics: proof that the run got past auth, signatures and validation."""
    async with aiohttp.ClientSession() as http, http.get(service.url + "/metrics") as resp:
        text = await resp.text()
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "http_requests"
        for s in family.samples
        if s.name == "http_requests_total"
    }


def assert_reached(counts: dict[tuple[str, str, str], float], *keys: tuple[str, str, str]) -> None:
    missing = [k for k in keys if not counts.get(k)]
    assert not missing, f"the fuzzer never got these answers: {missing}"


@pytest.fixture
def service_env() -> dict[str, str]:
    """What every fuzzed service gets on top of `spawn`'s: no migrations (the template
    is migrated), the click keys, no self-report chatter."""
    return {
        "CLICK_SIGNING_KEYS": SIGNING_KEYS,
        "METRICS_REPORT_INTERVAL_SECONDS": "3600",
        "LOG_LEVEL": "WARNING",
    }


async def test_alerting_openapi(
    spawn: Any, service_env: dict[str, str], keys: Keys, tmp_path: Path
) -> None:
    alerting = await spawn(
        "alerting",
        **service_env,
        ALERTING_MIGRATE="false",
        # No evaluation tick during the run: rules the fuzzer creates never fire, so no
        # notification goes to a channel URL it made up.
        ALERTING_EVAL_INTERVAL_SECONDS="3600",
        ALERTING_NOTIFY_MAX_ATTEMPTS="1",
    )
    await run_schemathesis(
        alerting,
        "/api/v1/openapi.yaml",
        tmp_path,
        config=_config(tmp_path),
        auth=_auth_file(tmp_path, keys),
        # The event stream never ends: each case would wait out the request timeout (a
        # full run of it took 190 s) and check nothing a request/response fuzzer can
        # judge. It takes no parameters; tests/alerting/test_api.py covers it.
        extra=["--exclude-path", "/api/v1/alerts/stream"],
    )
    assert_reached(
        await answered(alerting),
        ("POST", "/api/v1/rules", "201"),
        ("POST", "/api/v1/silences", "201"),
        ("POST", "/api/v1/channels", "201"),
        ("GET", "/api/v1/rules/{rule_id}", "200"),
    )


async def test_api_openapi(
    spawn: Any, service_env: dict[str, str], keys: Keys, tmp_path: Path
) -> None:
    api = await spawn("api", **service_env, API_MIGRATE="false")
    # The tenant routes are exercised as acme (its key makes the requests); now and then
    # another well-formed tenant id, which must be a 404.
    config = _config(
        tmp_path, parameters={"path.tenant": '{dictionary = "tenants", probability = 0.9}'}
    )
    await run_schemathesis(
        api, "/api/v1/openapi.yaml", tmp_path, config=config, auth=_auth_file(tmp_path, keys)
    )
    assert_reached(
        await answered(api),
        ("POST", "/{tenant}/emails", "201"),
        ("GET", "/{tenant}/stats", "200"),
        ("PUT", "/{tenant}/settings", "200"),
    )


async def test_ingest_openapi(spawn: Any, service_env: dict[str, str], tmp_path: Path) -> None:
    ingest = await spawn("ingest", **service_env, INGEST_TOKEN_KEYS=INGEST_TOKEN_KEYS)
    token = mint_token(SigningKeys.parse(INGEST_TOKEN_KEYS), TENANT)
    await run_schemathesis(
        ingest,
        "/v1/openapi.yaml",
        tmp_path,
        # The intake routes' security scheme gets a real ingest token.
        config=_config(tmp_path, f'[auth.openapi.IngestToken]\nbearer = "{token}"\n'),
        env={"FUZZ_SIGNING_KEYS": SIGNING_KEYS},  # positive click cases carry a real signature
    )
    assert_reached(
        await answered(ingest),
        ("GET", "/{tenant}/click/{email_id}", "302"),
        ("GET", "/{tenant}/pixel/{email_id}.gif", "200"),
        ("POST", "/v1/track", "202"),
        ("POST", "/v1/metrics", "200"),
        ("POST", "/api/v1/write", "204"),
        ("POST", "/v1/samples", "202"),
    )


async def test_writer_openapi(spawn: Any, service_env: dict[str, str], tmp_path: Path) -> None:
    # Its port serves the probes and this document only; hits reach it through RabbitMQ.
    writer = await spawn("writer", **service_env, WRITER_MIGRATE="false")
    await run_schemathesis(writer, "/v1/openapi.yaml", tmp_path, config=_config(tmp_path))
    # The probes are not counted in http_requests_total (shared/httpobs.py), and
    # schemathesis leaves out the operation its document came from: its report must say
    # it tested every probe, /metrics that the document was fetched.
    report = (tmp_path / "schemathesis.log").read_text()
    assert f"Tested: {len(PROBES)}\n" in report, report
    assert_reached(await answered(writer), ("GET", "/v1/openapi.yaml", "200"))
