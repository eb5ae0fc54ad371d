"""infra/compose.yaml, the Dockerfile and the nginx routes fit together and fit the code:
every component the issue names is there, the four services run from the one image with
their own command and port, healthchecks ask /readyz, Prometheus scrapes what compose
runs, and the proxy sends pixel/click/track to ingest and the rest to the api."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.support import INFRA, PORTS, ROOT

COMPOSE = INFRA / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    doc = yaml.safe_load(COMPOSE.read_text())  # also resolves the x-… anchors and merges
    assert isinstance(doc, dict)
    return doc


def test_every_component_is_a_service(compose: dict) -> None:
    services = compose["services"]
    for name in (
        "rabbitmq", "postgres", "jaeger", "prometheus", "grafana", "mailpit",
        "migrate", "proxy", *PORTS,
    ):  # fmt: skip
        assert name in services, name
    assert "management" in services["rabbitmq"]["image"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    mounts = " ".join(services["rabbitmq"]["volumes"])
    assert "definitions.json:/etc/rabbitmq/definitions.json" in mounts
    assert "rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf" in mounts
    assert any("grafana/provisioning" in v for v in services["grafana"]["volumes"])
    assert any("grafana/dashboards" in v for v in services["grafana"]["volumes"])
    assert services["migrate"]["command"] == ["python", "-m", "shared.db", "migrate"]


@pytest.mark.parametrize("name", list(PORTS))
def test_each_belfry_service_runs_from_the_one_image_and_checks_readyz(
    compose: dict, name: str
) -> None:
    service = compose["services"][name]
    port = PORTS[name]
    assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert service["image"] == compose["services"]["migrate"]["image"]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    env = service["environment"]
    assert env[f"{name.upper()}_PORT"] == str(port)
    for variable in ("AMQP_URL", "DATABASE_URL", "BELFRY_PREFIX", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        assert env[variable], variable
    assert env["AMQP_URL"].startswith("amqp://belfry:belfry@rabbitmq:5672/")
    test = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in test
    assert f"127.0.0.1:{port}:{port}" in service["ports"]
    assert service["read_only"] is True
    if name in ("ingest", "api"):
        assert env["CLICK_SIGNING_KEYS"]
    if name != "ingest":
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_ingest_spool_is_a_volume(compose: dict) -> None:
    ingest = compose["services"]["ingest"]
    spool = ingest["environment"]["INGEST_SPOOL_DIR"]
    assert any(v.endswith(f":{spool}") for v in ingest["volumes"])
    assert ingest["volumes"][0].split(":")[0] in compose["volumes"]


def test_prometheus_scrapes_every_service_compose_runs(compose: dict) -> None:
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for name, port in PORTS.items():
        assert targets[name] == f"{name}:{port}"
    assert "./prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]


def test_proxy_routes_tracking_paths_to_ingest_and_the_rest_to_the_api() -> None:
    conf = (INFRA / "nginx" / "belfry.conf").read_text()
    assert "server ingest:8080;" in conf and "server api:8083;" in conf
    locations = re.findall(r"location\s+(~|=)?\s*(\S+)\s*\{([^}]*)\}", conf)
    regex_to_ingest = [
        pattern for kind, pattern, body in locations if kind == "~" and "belfry_ingest" in body
    ]
    exact = {pattern: body for kind, pattern, body in locations if kind == "="}
    assert "belfry_ingest" in exact["/v1/track"]

    def upstream(path: str) -> str:
        if path in exact or any(re.search(p, path) for p in regex_to_ingest):
            return "ingest"
        return "api"

    assert upstream("/acme/pixel/welcome-42.gif") == "ingest"
    assert upstream("/acme/click/welcome-42?url=https%3A%2F%2Fexample.com") == "ingest"
    assert upstream("/v1/track") == "ingest"
    assert upstream("/acme/click-url/welcome-42?url=https%3A%2F%2Fexample.com") == "api"
    assert upstream("/acme/emails") == "api"
    assert upstream("/acme/dashboard") == "api"
    assert upstream("/health") == "api"


def test_proxy_keeps_metrics_and_internal_probes_off_the_public_host() -> None:
    """Without an nginx binary (tests/deploy/test_nginx.py runs a real one): each such
    path has an exact location, which nginx prefers to every regex and prefix, and it
    answers 404 instead of proxying."""
    conf = (INFRA / "nginx" / "belfry.conf").read_text()
    exact = dict(re.findall(r"location\s+=\s*(\S+)\s*\{([^}]*)\}", conf))
    for path in ("/metrics", "/health/detailed", "/readyz", "/livez"):
        assert "return 404" in exact[path] and "proxy_pass" not in exact[path], path
    assert "/health" not in exact  # Little Bell's health check stays public
    assert re.search(r"^\s*server_tokens off;", conf, re.MULTILINE)


def test_dockerfile_is_slim_non_root_and_caches_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    assert lines[0] == "FROM python:3.11-slim"
    copies = [line for line in lines if line.startswith("COPY")]
    assert copies[0] == "COPY pyproject.toml ./", "pyproject.toml first: the dependency layer"
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert lines.index("COPY shared ./shared") > install
    user = next(line for line in lines if line.startswith("USER"))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    # The runtime dependencies are read from pyproject.toml's [project] table (no dev extras).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] and "['project']['dependencies']" in text
    ignore = (ROOT / ".dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!shared/", "!services/", "!infra/alerting/"):
        assert needed in ignore


def test_docker_compose_config_when_docker_compose_works() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("docker compose is not available here (the parse checks above still ran)")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_files_the_services_are_pointed_at_are_in_the_image(compose: dict) -> None:
    # /app/<path> in the container is <path> in the repository, copied by the Dockerfile.
    dockerfile = (ROOT / "Dockerfile").read_text()
    k8s_config = yaml.safe_load((ROOT / "k8s" / "base" / "configmap.yaml").read_text())["data"]
    for env in (compose["services"]["alerting"]["environment"], k8s_config):
        relative = env["ALERTING_RULES_FILE"].removeprefix("/app/")
        assert (ROOT / relative).is_file(), relative
        assert f"COPY {relative.rsplit('/', 1)[0]} " in dockerfile


def test_shipped_dev_settings_parse_with_the_services_own_settings(compose: dict) -> None:
    # What compose and the dev overlay hand the services must pass their start-up checks
    # (a bad value would stop them with exit 2).
    from services.ingest.settings import IngestSettings
    from services.writer.settings import WriterSettings

    env = dict(compose["services"]["ingest"]["environment"])
    env["CLICK_SIGNING_KEYS"] = re.sub(
        r"^\$\{CLICK_SIGNING_KEYS:-(.*)\}$", r"\1", env["CLICK_SIGNING_KEYS"]
    )
    assert IngestSettings.from_env(env).port == PORTS["ingest"]
    assert WriterSettings.from_env(compose["services"]["writer"]["environment"]).port == 8081
    k8s_config = yaml.safe_load((ROOT / "k8s" / "base" / "configmap.yaml").read_text())["data"]
    (dev_secret,) = yaml.safe_load_all(
        (ROOT / "k8s" / "overlays" / "dev" / "secret.yaml").read_text()
    )
    settings = IngestSettings.from_env({**k8s_config, **dev_secret["stringData"]})
    assert settings.spool_dir.as_posix() == "/var/lib/belfry/spool"


def test_alerting_and_api_settings_parse_too(compose: dict) -> None:
    alerting = pytest.importorskip("services.alerting.settings")
    api = pytest.importorskip("services.api.settings")
    k8s_config = yaml.safe_load((ROOT / "k8s" / "base" / "configmap.yaml").read_text())["data"]
    key = {"CLICK_SIGNING_KEYS": "dev:dev-only-signing-key-not-secret"}
    for env in (compose["services"]["alerting"]["environment"], k8s_config):
        assert alerting.AlertingSettings.from_env(env).port == PORTS["alerting"]
    for env in (compose["services"]["api"]["environment"], k8s_config):
        assert api.ApiSettings.from_env({**env, **key}).port == PORTS["api"]


def test_the_egress_allow_list_admits_mailpit_alone(compose: dict) -> None:
    """A tenant's channel must not reach Postgres, RabbitMQ or Belfry's own services: the
    compose network is private, so the allow-list names Mailpit's fixed address only."""
    allowed = compose["services"]["alerting"]["environment"]["ALERTING_EGRESS_ALLOW_CIDRS"]
    mailpit = compose["services"]["mailpit"]["networks"]["belfry"]["ipv4_address"]
    assert allowed.split(",") == [f"{mailpit}/32"]


def test_the_console_reaches_each_service_at_its_compose_name_and_port(compose: dict) -> None:
    """The api's console calls the other services server-side: each API_<SVC>_URL names
    that compose service and the port it listens on (127.0.0.1 would be the api's own
    container)."""
    env = compose["services"]["api"]["environment"]
    for name in ("ingest", "writer", "alerting"):
        url = urlsplit(env[f"API_{name.upper()}_URL"])
        assert url.hostname == name and name in compose["services"]
        assert url.port == PORTS[name]
