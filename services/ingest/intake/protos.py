"""Protobuf classes that no installed package generates: Prometheus remote_write 1.0's
`prometheus.WriteRequest` (prompb/types.proto, remote.proto) and `google.rpc.Status`
(the body of an OTLP/HTTP error answer).

Built at import time from descriptors, in a pool of our own (so a `google.rpc.Status`
registered by another package can't clash), and parsed by the same C (upb) runtime as
the generated OTLP classes: a hand-written wire reader in Python would be ~10x slower and
one more parser to get right on hostile input. Only the fields we read are declared with
their types; `exemplars` and native `histograms` are declared as opaque `bytes` so they
cost no parsing, yet we can still see that a series carried native histograms (which we
refuse, by count). A series' `labels` are raw bytes too: the decoder caches what each
distinct label list means (the same series come back at every scrape), and parses one
with `Label` only on a miss. proto3 strings: upb refuses a label that is not valid UTF-8.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_Field = tuple[str, int, int, str]  # name, number, type, type name ("*": repeated)

# MetricMetadata.MetricType, by number (prompb/types.proto).
METRIC_TYPES = {
    0: "unknown",
    1: "counter",
    2: "gauge",
    3: "histogram",
    4: "gaugehistogram",
    5: "summary",
    6: "info",
    7: "stateset",
}


def _message(file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[_Field]) -> None:
    """Add message `name`; a field's type name starting with "*" makes it repeated."""
    msg = file.message_type.add(name=name)
    for field_name, number, kind, type_name in fields:
        repeated = type_name.startswith("*")
        field = msg.field.add(
            name=field_name,
            number=number,
            type=kind,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
        )
        if type_name.lstrip("*"):
            field.type_name = type_name.lstrip("*")


def _prompb() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="belfry/prompb.proto", package="prometheus", syntax="proto3"
    )
    _message(file, "Label", [("name", 1, _F.TYPE_STRING, ""), ("value", 2, _F.TYPE_STRING, "")])
    _message(
        file, "Sample", [("value", 1, _F.TYPE_DOUBLE, ""), ("timestamp", 2, _F.TYPE_INT64, "")]
    )
    _message(
        file,
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_BYTES, "*"),  # raw: see remote_write.py's label cache
            ("samples", 2, _F.TYPE_MESSAGE, "*.prometheus.Sample"),
            ("exemplars", 3, _F.TYPE_BYTES, "*"),
            ("histograms", 4, _F.TYPE_BYTES, "*"),
        ],
    )
    _message(
        file,
        "MetricMetadata",
        [
            ("type", 1, _F.TYPE_INT32, ""),  # an enum on the wire is a varint too
            ("metric_family_name", 2, _F.TYPE_STRING, ""),
            ("help", 4, _F.TYPE_STRING, ""),
            ("unit", 5, _F.TYPE_STRING, ""),
        ],
    )
    _message(
        file,
        "WriteRequest",
        [
            ("timeseries", 1, _F.TYPE_MESSAGE, "*.prometheus.TimeSeries"),
            ("metadata", 3, _F.TYPE_MESSAGE, "*.prometheus.MetricMetadata"),
        ],
    )
    return file


def _rpc_status() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="belfry/rpc_status.proto", package="google.rpc", syntax="proto3"
    )
    # `details` (repeated Any, field 3) is left out: we never send any.
    _message(file, "Status", [("code", 1, _F.TYPE_INT32, ""), ("message", 2, _F.TYPE_STRING, "")])
    return file


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_prompb())
_pool.Add(_rpc_status())

WriteRequest: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("prometheus.WriteRequest")
)
TimeSeries: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("prometheus.TimeSeries")
)
Label: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("prometheus.Label"))
RpcStatus: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("google.rpc.Status"))
