"""infra/rabbitmq/definitions.json is the topology the code declares, so the broker that
compose starts and the services agree on every exchange, queue argument and binding."""

from __future__ import annotations

import json

from shared.topology import CHANNEL_TYPES, DELIVERY_LIMIT, Topology
from tests.deploy.support import INFRA, ROOT, load_script

DEFINITIONS = INFRA / "rabbitmq" / "definitions.json"


def test_file_is_what_the_script_generates_from_the_code() -> None:
    script = load_script("rabbitmq_definitions")
    assert DEFINITIONS.read_text() == script.render("belfry"), (
        "infra/rabbitmq/definitions.json is stale: run "
        ".venv/bin/python scripts/rabbitmq_definitions.py"
    )


def test_definitions_hold_every_object_of_the_topology_with_its_arguments() -> None:
    # Compared as sets against Topology.spec() directly (not through the script), so a
    # script that dropped or rewrote something fails here even if the file matches it.
    doc = json.loads(DEFINITIONS.read_text())
    spec = Topology("belfry").spec()
    assert {(e["name"], e["type"], e["durable"]) for e in doc["exchanges"]} == {
        (e.name, e.type, True) for e in spec.exchanges
    }
    queues = {q["name"]: q for q in doc["queues"]}
    assert set(queues) == {q.name for q in spec.queues}
    for q in spec.queues:
        assert queues[q.name]["arguments"] == q.arguments, q.name
        assert queues[q.name]["durable"] is True
    assert {
        (b["source"], b["destination"], b["destination_type"], b["routing_key"])
        for b in doc["bindings"]
    } == {(b.exchange, b.queue, "queue", b.routing_key) for b in spec.bindings}
    vhosts = {item["vhost"] for key in ("exchanges", "queues", "bindings") for item in doc[key]}
    assert vhosts == {"/"} and doc["vhosts"] == [{"name": "/"}]


def test_the_topology_the_issue_asks_for_is_there() -> None:
    doc = json.loads(DEFINITIONS.read_text())
    queues = {q["name"]: q["arguments"] for q in doc["queues"]}
    assert all(args["x-queue-type"] == "quorum" for args in queues.values())
    work = queues["belfry.writer.hits"]
    assert work["x-delivery-limit"] == DELIVERY_LIMIT
    assert work["x-dead-letter-exchange"] == "belfry.dlx"
    for kind in CHANNEL_TYPES:
        assert f"belfry.notify.{kind}.dlq" in queues
        delays = [n for n in queues if n.startswith(f"belfry.notify.{kind}.delay.")]
        assert delays and all(
            queues[n]["x-dead-letter-exchange"] == "belfry.notify" for n in delays
        )
    assert doc["policies"] and all(p["pattern"] == "^belfry\\." for p in doc["policies"])
    # Boot-time import skips the default user: the file brings the compose user itself.
    assert [u["name"] for u in doc["users"]] == ["belfry"]
    assert doc["permissions"][0]["user"] == "belfry"


def test_dev_password_hash_is_rabbitmqs_sha256_scheme() -> None:
    import base64
    import hashlib

    script = load_script("rabbitmq_definitions")
    raw = base64.b64decode(script.password_hash("belfry"))
    salt, digest = raw[:4], raw[4:]
    assert digest == hashlib.sha256(salt + b"belfry").digest()


def test_compose_loads_the_definitions_file() -> None:
    conf = (INFRA / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf
    assert (ROOT / "infra" / "rabbitmq" / "enabled_plugins").read_text().strip().endswith(".")
