"""The metric and error intake's operations in ingest's OpenAPI document (the JSON and
snappy-protobuf routes; the OTLP ones are in openapi_paths.py)."""

from __future__ import annotations

from typing import Any

from services.ingest.openapi_paths import (
    BINARY,
    JSON,
    PROTOBUF,
    TOKEN,
    answer,
    intake_errors,
    otlp,
    partly,
    refused,
    schema,
)


def _stored(what: str) -> dict[str, Any]:
    return answer(
        f"Every {what} was confirmed by the broker or fsync'd to the spool", schema("Accepted")
    )


def _too_large(what: str) -> dict[str, Any]:
    return refused(
        "Body over `INTAKE_MAX_BODY_BYTES` (or, inflated, `INTAKE_MAX_DECODED_BYTES`), or"
        f" more than `INTAKE_MAX_ITEMS` {what}"
    )


def otlp_metrics() -> dict[str, Any]:
    return otlp(
        "points",
        "OTLP/HTTP metrics (what an OpenTelemetry SDK or Collector exporter sends)",
        "An `ExportMetricsServiceRequest`, protobuf or OTLP/JSON, gzip accepted\n"
        "(`Content-Encoding: gzip`; bounded by `INTAKE_MAX_DECODED_BYTES` once"
        " inflated).\nThe tenant is the ingest token's. Points refused one by one (a"
        " non-finite value,\ntoo many labels, an exponential histogram, a tenant"
        " limit) are counted in\n`partial_success`; the rest is stored. A 200 means"
        " every stored sample was\nconfirmed by the broker or fsync'd to the spool."
        " Errors are a `google.rpc.Status`\nin the request's encoding (JSON when it"
        " can't be told).\n",
        "OtlpMetricsJson",
        "OtlpAnswer",
    )


def otlp_logs() -> dict[str, Any]:
    return otlp(
        "exception records",
        "OTLP/HTTP logs; the records with an exception become errors",
        "An `ExportLogsServiceRequest`, protobuf or OTLP/JSON, gzip accepted. A log"
        " record\nwith `exception.type` or `exception.message` (what an SDK's logging"
        " handler sets on\n`logger.exception(...)`) becomes an error as on"
        " `/v1/errors` (stack:\n`exception.stacktrace`; labels: the resource's,"
        " `service.name` -> `service`); other\nrecords are ignored (counted in"
        " `/metrics`, not refused). Refused exception records\nare counted in"
        " `partial_success`.\n",
        "OtlpLogsJson",
        "OtlpAnswer",
    )


def remote_write() -> dict[str, Any]:
    return {
        "summary": "Prometheus remote_write 1.0 (a `remote_write:` block pointed here)",
        "description": "A snappy-compressed (block format) `prometheus.WriteRequest`. The"
        " tenant is the\ningest token's (`authorization: credentials:` in Prometheus). 400"
        " when samples were\nrefused (the message says which and why; the rest is stored:"
        " Prometheus does not\nresend a 400); 429 / 503 with `Retry-After` are worth"
        " retrying. Native histograms\nand remote_write 2.0 are not taken.\n",
        "security": TOKEN,
        "requestBody": {"required": True, "content": {PROTOBUF: {"schema": BINARY}}},
        "responses": {
            "204": {"description": "Stored (broker-confirmed or fsync'd to the spool)"},
            "400": refused(
                "Not snappy, not a WriteRequest, or some samples refused (the rest stored)"
            ),
            **intake_errors(),
            "413": refused(
                "Body over `INTAKE_MAX_BODY_BYTES`, or its uncompressed length over"
                " `INTAKE_MAX_DECODED_BYTES`"
            ),
            "415": refused(
                "Not remote_write 1.0 (another content type, `proto=` naming 2.0, or not snappy)"
            ),
            **intake_errors("429", "503"),
        },
    }


def samples() -> dict[str, Any]:
    example = [
        {"name": "queue_depth", "value": 1500, "labels": {"queue": "mail"}},
        {"name": "jobs_done_total", "value": 7, "kind": "counter"},
    ]
    body = {
        "type": "array",
        "minItems": 1,
        "maxItems": 10000,
        "items": schema("PlainSample"),
    }
    return {
        "summary": "Metric samples as plain JSON (a curl or a cron job)",
        "description": "Each item is checked alone; the valid ones are stored even when"
        " others are not\n(400 with `errors` by index, as `/v1/track` answers). `ts`: epoch"
        " seconds or RFC\n3339 with an offset, at most 5 minutes ahead; absent, the time of"
        " receipt. A\n`tenant` field is ignored and a `tenant` label is kept as"
        " `exported_tenant`: the\ntenant is the ingest token's.\n",
        "security": TOKEN,
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": body, "examples": {"two": {"value": example}}}},
        },
        "responses": {
            "202": _stored("sample"),
            "400": partly(
                "samples",
                "SamplesPartlyRefused",
                ", and\n`limits` when a tenant limit refused some",
            ),
            **intake_errors(),
            "413": _too_large("samples"),
            **intake_errors("429", "503"),
        },
    }


def errors_route() -> dict[str, Any]:
    example = {
        "type": "TimeoutError",
        "message": "db timed out after 5s",
        "stack": "Traceback (most recent call last): ...",
        "labels": {"service": "checkout"},
    }
    body = {
        "anyOf": [
            schema("ErrorItem"),
            {"type": "array", "minItems": 1, "maxItems": 10000, "items": schema("ErrorItem")},
        ]
    }
    return {
        "summary": "An application's errors (exceptions) as JSON",
        "description": "One error object or an array of them. Each is checked alone; the"
        " valid ones are\nstored even when others are not (400 with `errors` by index, as"
        " `/v1/track`\nanswers). A message over 4096 characters or a stack over 32 KiB is"
        " cut, not\nrefused; an error over 64 KiB once encoded is refused. Without a"
        " `fingerprint`,\ningest computes one from the type and the top stack frames (line"
        " numbers ignored;\nshared/errors_contract.py). Each request also counts its errors"
        " per fingerprint\nin the metric `errors_total{fingerprint, service}` (kind"
        " counter_delta) for the\nalert rules. The tenant is the ingest token's; a `tenant`"
        " label is kept as\n`exported_tenant`.\n",
        "security": TOKEN,
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": body, "examples": {"one": {"value": example}}}},
        },
        "responses": {
            "202": _stored("error"),
            "400": partly("errors", "PartlyRefused"),
            **intake_errors(),
            "413": _too_large("errors"),
            **intake_errors("429", "503"),
        },
    }
