"""The Kubernetes manifests: every object validates offline against the Kubernetes
schemas (kubernetes-validate), the custom resources of the operators carry what their
CRDs require, both overlays render (with kubectl/kustomize when present, else with the
documented stand-in in tests/deploy/kustomize.py — compared with each other when both
run), and the Deployments' probes, ports, drain time and security settings fit the code.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from aiohttp import web

from shared.probes import PROBE_PATHS, Health, add_probe_routes
from shared.serve import serve
from shared.topology import Topology
from tests.deploy import kustomize
from tests.deploy.support import K8S, PORTS

OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.30.0"  # the oldest minor the manifests promise to work on
# Custom resources: (apiVersion, kind) → required paths ("a.b" = obj["a"]["b"]).
CUSTOM = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): ("spec.replicas",),
    ("postgresql.cnpg.io/v1", "Cluster"): ("spec.instances", "spec.storage.size"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): ("spec.schedule", "spec.cluster.name"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("spec.scaleTargetRef.name", "spec.triggers"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ("spec.secretTargetRef",),
}
# Secrets the services read that the operators create (or the admin, from the template).
OPERATOR_SECRETS = {"belfry-rabbitmq-default-user", "belfry-pg-app"}
Object = dict[str, Any]


def key(obj: Object) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def external_render(overlay: str) -> list[Object] | None:
    """`kustomize build` / `kubectl kustomize` output, or None when neither is installed."""
    for tool in (["kustomize", "build"], ["kubectl", "kustomize"]):
        if shutil.which(tool[0]):
            result = subprocess.run(
                [*tool, str(K8S / "overlays" / overlay)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            return [d for d in yaml.safe_load_all(result.stdout) if d]
    return None


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[tuple[str, str], Object]]:
    overlay = request.param
    objects = kustomize.build(K8S / "overlays" / overlay)
    by_key = {key(o): o for o in objects}
    assert len(by_key) == len(objects), "two objects share a kind and name"
    return overlay, by_key


def dig(obj: Object, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part]
    return obj


def deployments(objs: dict[tuple[str, str], Object]) -> dict[str, Object]:
    return {
        name.removeprefix("belfry-"): o
        for (kind, name), o in objs.items()
        if kind == "Deployment" and name.startswith("belfry-")
    }


def all_manifest_files() -> list[Any]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def test_stand_in_renders_what_kustomize_renders() -> None:
    compared = 0
    for overlay in OVERLAYS:
        reference = external_render(overlay)
        if reference is None:
            pytest.skip("no kustomize or kubectl here: the stand-in alone renders the overlays")
        mine = {key(o): o for o in kustomize.build(K8S / "overlays" / overlay)}
        theirs = {key(o): o for o in reference}
        assert set(mine) == set(theirs), overlay
        for k in mine:
            assert mine[k] == theirs[k], (overlay, k)
            compared += 1
    assert compared > 40


def test_stand_in_refuses_what_it_does_not_implement(tmp_path: Any) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(ValueError, match="commonLabels"):
        kustomize.build(tmp_path)


def test_every_object_validates(rendered: tuple[str, dict]) -> None:
    overlay, objs = rendered
    builtin = 0
    for (kind, name), obj in objs.items():
        api = (obj["apiVersion"], kind)
        if api in CUSTOM:
            for path in CUSTOM[api]:
                assert dig(obj, path) not in (None, "", [], {}), (overlay, kind, name, path)
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        builtin += 1
    assert builtin > 15


def test_every_file_validates_on_its_own() -> None:
    # Patches are partial objects; everything else (the secret template too) must validate.
    for path in all_manifest_files():
        patches = {
            p["path"]
            for p in yaml.safe_load((path.parent / "kustomization.yaml").read_text()).get(
                "patches", []
            )
        }
        if path.name in patches:
            continue
        for obj in kustomize.load_documents(path):
            if (obj["apiVersion"], obj["kind"]) in CUSTOM:
                continue
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_probe_paths_and_ports_match_the_services(rendered: tuple[str, dict]) -> None:
    _, objs = rendered
    app = web.Application()
    add_probe_routes(app, Health("x", "0"))
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/livez", "/readyz"} <= routes and routes == set(PROBE_PATHS)
    deps = deployments(objs)
    assert set(deps) == set(PORTS)
    for name, dep in deps.items():
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        (port,) = container["ports"]
        assert port == {"name": "http", "containerPort": PORTS[name], "protocol": "TCP"}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[f"{name.upper()}_PORT"] == str(PORTS[name])
        assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(PORTS[name])
        assert annotations["prometheus.io/path"] in routes
        service = objs[("Service", f"belfry-{name}")]
        (sport,) = service["spec"]["ports"]
        assert (sport["port"], sport["targetPort"]) == (PORTS[name], "http")
        assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_termination_grace_covers_prestop_and_the_drain(rendered: tuple[str, dict]) -> None:
    _, objs = rendered
    config = objs[("ConfigMap", "belfry-config")]["data"]
    grace = float(config["SHUTDOWN_GRACE_SECONDS"])
    drain = inspect.signature(serve).parameters["shutdown_timeout"].default
    for name, dep in deployments(objs).items():
        pod = dep["spec"]["template"]["spec"]
        command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        needed = float(command[1]) + grace + drain
        assert needed < pod["terminationGracePeriodSeconds"] <= needed + 30, name


def test_pods_run_non_root_read_only_with_resources(rendered: tuple[str, dict]) -> None:
    _, objs = rendered
    config = objs[("ConfigMap", "belfry-config")]["data"]
    workloads = [o for (kind, _), o in objs.items() if kind in ("Deployment", "Job")]
    assert len(workloads) >= 7
    for obj in workloads:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, obj["metadata"]["name"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
    for name, dep in deployments(objs).items():
        pod = dep["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        if name == "ingest":
            assert "emptyDir" in volumes[mounts[config["INGEST_SPOOL_DIR"]]]


def test_references_resolve(rendered: tuple[str, dict]) -> None:
    overlay, objs = rendered
    secrets = {name for kind, name in objs if kind == "Secret"} | OPERATOR_SECRETS
    if overlay == "prod":
        assert ("Secret", "belfry-secrets") not in objs, "prod must not ship a secret"
        secrets.add("belfry-secrets")  # created by the admin from secret.template.yaml
    for (kind, name), obj in objs.items():
        if kind not in ("Deployment", "Job"):
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in objs
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, (name, ref)
        assert obj["metadata"]["namespace"] == "belfry"
    names = {name for kind, name in objs if kind == "Deployment"}
    budgets = [o for (kind, _), o in objs.items() if kind == "PodDisruptionBudget"]
    for budget in budgets:
        assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] in names
    assert {b["metadata"]["name"].removeprefix("belfry-") for b in budgets} >= set(PORTS)


def test_autoscaling_ingest_on_cpu_and_writer_on_queue_depth(rendered: tuple[str, dict]) -> None:
    _, objs = rendered
    hpa = objs[("HorizontalPodAutoscaler", "belfry-ingest")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "belfry-ingest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert ("HorizontalPodAutoscaler", "belfry-writer") not in objs, "KEDA owns that HPA"
    scaled = objs[("ScaledObject", "belfry-writer")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "belfry-writer"
    (trigger,) = scaled["spec"]["triggers"]
    prefix = objs[("ConfigMap", "belfry-config")]["data"]["BELFRY_PREFIX"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == Topology(prefix).writer_queue
    assert ("TriggerAuthentication", trigger["authenticationRef"]["name"]) in objs


def test_ingress_routes_tracking_to_ingest_and_the_rest_to_the_api(
    rendered: tuple[str, dict],
) -> None:
    _, objs = rendered
    ingress = objs[("Ingress", "belfry")]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]

    def backend(path: str) -> str:
        # ingress-nginx with use-regex: case-insensitive prefix regex, longest first.
        for entry in sorted(paths, key=lambda p: len(p["path"]), reverse=True):
            pattern = entry["path"]
            if entry["pathType"] == "Exact" and path != pattern:
                continue
            if re.match(pattern, path, re.IGNORECASE):
                return str(entry["backend"]["service"]["name"])
        raise AssertionError(path)

    assert backend("/acme/pixel/welcome-42.gif") == "belfry-ingest"
    assert backend("/acme/click/welcome-42") == "belfry-ingest"
    assert backend("/v1/track") == "belfry-ingest"
    assert backend("/acme/click-url/welcome-42") == "belfry-api"
    assert backend("/acme/emails") == "belfry-api"
    assert backend("/health") == "belfry-api"
    for entry in paths:
        assert ("Service", entry["backend"]["service"]["name"]) in objs


NOT_PUBLIC = ("/metrics", "/health/detailed", "/readyz", "/livez")


def test_ingress_keeps_metrics_and_internal_probes_off_the_public_host(
    rendered: tuple[str, dict],
) -> None:
    """ingress-nginx with use-regex turns every path into `~* "^<path>"` (Exact ones too),
    tried longest first: the anchored paths catch exactly these, in any case, and send
    them to a Service without endpoints (503, no pod reached)."""
    _, objs = rendered
    ingress = objs[("Ingress", "belfry")]
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]

    def backend(path: str) -> str:
        for entry in sorted(paths, key=lambda p: len(p["path"]), reverse=True):
            if re.match("^" + entry["path"], path, re.IGNORECASE):
                return str(entry["backend"]["service"]["name"])
        raise AssertionError(path)

    for path in NOT_PUBLIC:
        assert backend(path) == "belfry-not-public", path
        assert backend(path.upper()) == "belfry-not-public", path
        assert backend(path + "/") == "belfry-api", path  # aiohttp: no such route, 404
    for path in ("/health", "/metricsco/emails", "/livezone/dashboard", "/readyz-inc/stats"):
        assert backend(path) == "belfry-api", path
    hidden = objs[("Service", "belfry-not-public")]
    assert "selector" not in hidden["spec"], "a selector would give it endpoints"
    for entry in paths:
        if entry["backend"]["service"]["name"] == "belfry-not-public":
            assert entry["pathType"] == "ImplementationSpecific", entry["path"]


def test_prometheus_scrapes_the_pods_not_the_ingress(rendered: tuple[str, dict]) -> None:
    _, objs = rendered
    for name, deployment in deployments(objs).items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert annotations["prometheus.io/port"] == str(PORTS[name]), name


def test_dependencies_run_by_their_operators(rendered: tuple[str, dict]) -> None:
    overlay, objs = rendered
    rabbit = objs[("RabbitmqCluster", "belfry-rabbitmq")]
    postgres = objs[("Cluster", "belfry-pg")]
    if overlay == "prod":
        assert rabbit["spec"]["replicas"] == 3
        assert postgres["spec"]["instances"] >= 2
        assert "barmanObjectStore" in postgres["spec"]["backup"]
        assert objs[("ScheduledBackup", "belfry-pg-nightly")]["spec"]["cluster"]["name"] == (
            "belfry-pg"
        )
    assert postgres["spec"]["bootstrap"]["initdb"]["database"] == "belfry"
    job = objs[("Job", "belfry-migrate")]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "-m", "shared.db", "migrate",
    ]  # fmt: skip
    config = objs[("ConfigMap", "belfry-config")]["data"]
    endpoint = config["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4318"
    assert ("Service", "otel-collector") in objs and ("Service", "jaeger") in objs
    collector = yaml.safe_load(objs[("ConfigMap", "otel-collector")]["data"]["config.yaml"])
    assert collector["exporters"]["otlp"]["endpoint"] == "jaeger:4317"


def test_base_ships_no_secret_and_the_template_holds_only_placeholders() -> None:
    base = kustomize.build(K8S / "base")
    assert not [o for o in base if o["kind"] == "Secret"]
    (template,) = kustomize.load_documents(K8S / "base" / "secret.template.yaml")
    assert all("REPLACE" in value for value in template["stringData"].values())
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert "secret.template.yaml" not in listed


def test_readme_names_the_crds() -> None:
    readme = (K8S / "README.md").read_text()
    for crd in (
        "rabbitmqclusters.rabbitmq.com",
        "clusters.postgresql.cnpg.io",
        "scheduledbackups.postgresql.cnpg.io",
        "scaledobjects.keda.sh",
        "triggerauthentications.keda.sh",
    ):
        assert crd in readme, crd


def test_the_console_reaches_each_service_at_its_service_name_and_port(
    rendered: tuple[str, dict[tuple[str, str], Object]],
) -> None:
    """API_<SVC>_URL in the config names the Service of that component and its port."""
    _overlay, by_key = rendered
    (config,) = [
        o
        for (kind, _), o in by_key.items()
        if kind == "ConfigMap" and "API_INGEST_URL" in o.get("data", {})
    ]
    for name in ("ingest", "writer", "alerting"):
        url = urlsplit(config["data"][f"API_{name.upper()}_URL"])
        service = by_key[("Service", f"belfry-{name}")]
        assert url.hostname is not None and url.hostname.split(".")[0] == f"belfry-{name}"
        assert url.port in {p["port"] for p in service["spec"]["ports"]}
