"""Generate `infra/rabbitmq/definitions.json` from the topology the code declares.

    python scripts/rabbitmq_definitions.py            # (re)write the file
    python scripts/rabbitmq_definitions.py --check    # exit 1 when the file is stale
    python scripts/rabbitmq_definitions.py --prefix other -o -   # another prefix, to stdout

The exchanges, queues (with their arguments) and bindings come from
`shared.topology.Topology(prefix).spec()`, the one list the services declare at connect
time, so the broker that compose starts already holds the same topology and a test keeps
the two from drifting. Around it this adds what a fresh broker needs because importing
definitions at boot skips RabbitMQ's default `guest` user (which is loopback-only anyway):
the vhost, a development user `belfry` / `belfry` for the containers on the compose
network (never for production: Kubernetes uses the operator's generated credentials), and
a policy spreading quorum-queue leaders over the cluster's nodes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.topology import Topology  # noqa: E402

DEFAULT_OUTPUT = ROOT / "infra" / "rabbitmq" / "definitions.json"
VHOST = "/"
DEV_USER = "belfry"
DEV_PASSWORD = "belfry"
# A fixed salt keeps the generated file stable (it is compared byte for byte); the
# password it protects is a documented development credential, not a secret.
_DEV_SALT = b"blfy"


def password_hash(password: str, salt: bytes = _DEV_SALT) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))."""
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def definitions(prefix: str = "belfry") -> dict[str, Any]:
    """The definitions document for one prefix (what RabbitMQ's `load_definitions` reads)."""
    spec = Topology(prefix).spec()
    return {
        "users": [
            {
                "name": DEV_USER,
                "password_hash": password_hash(DEV_PASSWORD),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"],
                "limits": {},
            }
        ],
        "vhosts": [{"name": VHOST}],
        "permissions": [
            {"user": DEV_USER, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "parameters": [],
        "global_parameters": [],
        "policies": [
            {
                # Quorum queues of a 3-node cluster: leaders spread over the nodes, so
                # one node does not carry every queue's writes. Arguments the code sets
                # (delivery limit, dead-lettering) stay on the queues themselves.
                "vhost": VHOST,
                "name": f"{prefix}-quorum-leaders",
                "pattern": f"^{prefix}\\.",
                "apply-to": "queues",
                "priority": 0,
                "definition": {"queue-leader-locator": "balanced"},
            }
        ],
        "exchanges": [
            {
                "name": ex.name,
                "vhost": VHOST,
                "type": ex.type,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for ex in spec.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": VHOST,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(q.arguments),
            }
            for q in spec.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": VHOST,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in spec.bindings
        ],
    }


def render(prefix: str = "belfry") -> str:
    return json.dumps(definitions(prefix), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/rabbitmq_definitions.py")
    parser.add_argument("--prefix", default="belfry", help="topology prefix (BELFRY_PREFIX)")
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), help="file, or - for stdout")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = render(args.prefix)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is stale: run python scripts/rabbitmq_definitions.py", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
