"""`error.v1`: the contract's bounds, and fingerprints computed as documented in
shared/errors_contract.py (line numbers and addresses don't split a group; the function
and file do; the innermost frames count; no stack -> the masked message)."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.ingest.intake.errors import decode_error_items, decode_otlp_logs
from shared.contracts import ContractError, make_envelope, validate_envelope
from shared.errors_contract import (
    ERROR_V1,
    compute_fingerprint,
    mask_message,
    top_frames,
    valid_fingerprint,
)

PY = """Traceback (most recent call last):
  File "/app/web.py", line {outer}, in handle
    pay(order)
  File "/app/pay.py", line {inner}, in pay
    raise KeyError(order)
KeyError: 'o-{n}'"""

JS = """TypeError: Cannot read properties of undefined (reading 'id')
    at charge (/app/src/pay.js:{line}:17)
    at async handle (/app/src/web.js:88:5)"""

JAVA = """java.lang.IllegalStateException: closed
\tat com.acme.Pay.charge(Pay.java:{line})
\tat com.acme.Web.handle(Web.java:20)"""

GO = """panic: runtime error: index out of range

goroutine 7 [running]:
main.charge({addr}, 0x3)
\t/app/pay.go:{line} +0x1d
main.main()
\t/app/main.go:9 +0x25"""


def test_line_numbers_and_addresses_do_not_split_a_group() -> None:
    def fp(stack: str) -> str:
        return compute_fingerprint("E", stack)

    assert fp(PY.format(outer=10, inner=20, n=1)) == fp(PY.format(outer=11, inner=99, n=2))
    assert fp(JS.format(line=3)) == fp(JS.format(line=300))
    assert fp(JAVA.format(line=3)) == fp(JAVA.format(line=300))
    assert fp(GO.format(addr="0xc000010000", line=3)) == fp(GO.format(addr="0x1", line=4))


def test_type_function_and_file_do_split_a_group() -> None:
    stack = PY.format(outer=1, inner=2, n=1)
    base = compute_fingerprint("KeyError", stack)
    assert compute_fingerprint("ValueError", stack) != base
    assert compute_fingerprint("KeyError", stack.replace("in pay", "in refund")) != base
    assert compute_fingerprint("KeyError", stack.replace("/app/pay.py", "/app/x.py")) != base
    assert len(base) == 32 and valid_fingerprint(base)


def test_innermost_frames_are_the_top_ones() -> None:
    assert top_frames(PY.format(outer=1, inner=2, n=1)) == [
        'File "/app/pay.py", in pay',
        'File "/app/web.py", in handle',
    ]
    assert top_frames(JS.format(line=1)) == [
        "at charge (/app/src/pay.js)",
        "at async handle (/app/src/web.js)",
    ]
    assert top_frames(GO.format(addr="0x1", line=1))[0] == "main.charge(,) /app/pay.go"
    frames = "\n".join(f'  File "/a.py", line 1, in f{i}' for i in range(10))
    assert top_frames(frames) == [f'File "/a.py", in f{i}' for i in (9, 8, 7, 6, 5)]


def test_without_frames_the_masked_message_groups() -> None:
    assert mask_message("order 123 not found for 'bob' (id 3f2a9c1d-77e0)") == (
        "order <n> not found for <s> (id <id>)"
    )
    a = compute_fingerprint("NotFound", "", "order 123 not found")
    assert a == compute_fingerprint("NotFound", "no frames here", "order 456 not found")
    assert a != compute_fingerprint("NotFound", "", "user 1 not found")


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return make_envelope("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", ERROR_V1, "acme", now, now, data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"type": "E"}, "fingerprint"),
        ({"fingerprint": "f"}, "a type or a message"),
        ({"fingerprint": "a b", "type": "E"}, "data.fingerprint"),
        ({"fingerprint": "f" * 129, "type": "E"}, "data.fingerprint"),
        ({"fingerprint": "f", "type": "E" * 257}, "data.type"),
        ({"fingerprint": "f", "message": "m" * 4097}, "data.message"),
        ({"fingerprint": "f", "message": "m", "stack": "s" * (32 * 1024 + 1)}, "data.stack"),
        ({"fingerprint": "f", "message": "a\x00b"}, "data.message"),
        ({"fingerprint": "f", "message": "m", "labels": {"__x": "v"}}, "data.labels"),
        ({"fingerprint": "f", "message": "m", "labels": {"a": 1}}, "data.labels"),
        ({"fingerprint": "f", "message": "m", "extra": 1}, "extra"),
    ],
)
def test_contract_refuses_with_the_reason(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        validate_envelope(envelope(data))


def test_contract_accepts_the_bounds() -> None:
    data = {
        "fingerprint": "A-z_0.9:" + "f" * 120,
        "type": "T" * 256,
        "message": "m" * 4096,
        "stack": "s" * 32 * 1024,
        "labels": {"service": "web"},
    }
    assert validate_envelope(envelope(data)).data == data


def test_items_given_and_computed_fingerprints() -> None:
    now = datetime.now(UTC)
    stack = "".join(traceback.format_stack(limit=3))
    batch = decode_error_items(
        [
            {"type": "E", "message": "x", "stack": stack},
            {"type": "E", "message": "x", "fingerprint": "mine"},
            {"message": "x", "ts": (now - timedelta(days=31)).isoformat()},
        ],
        now,
        timedelta(days=30),
    )
    assert [e.data.fingerprint for e in batch.errors] == [compute_fingerprint("E", stack), "mine"]
    assert batch.problems == [{"index": 2, "error": "ts is older than 30 days"}]


def test_logs_body_with_records_but_no_exception_is_ignored() -> None:
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}'
    batch = decode_otlp_logs(body, "application/json", datetime.now(UTC), timedelta(days=1), 10)
    assert (batch.errors, batch.problems, batch.ignored) == ([], [], 1)
