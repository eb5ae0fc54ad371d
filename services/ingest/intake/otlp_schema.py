"""A parse-only copy of the OTLP metrics schema in which attribute lists stay raw bytes.

Why: with the generated classes, reading a data point's attributes builds a Python
object per KeyValue and per AnyValue (~1 µs each), yet an application sends the same few
attribute sets again and again. Here every `repeated KeyValue attributes` field (and the
exemplars, which we ignore) is declared `repeated bytes`, so the decoder gets each
attribute set as a tuple of bytes, looks it up in a bounded cache, and only on a miss
parses it with the real `KeyValue` class. Same wire format, so the same bytes parse; the
copy is derived from the generated descriptors at import time (field numbers, oneofs and
proto3 `optional`s are theirs), in a pool of its own.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

_KEY_VALUE = ".opentelemetry.proto.common.v1.KeyValue"
_EXEMPLAR = ".opentelemetry.proto.metrics.v1.Exemplar"
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES


def _files(file: Any, seen: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    for dependency in file.dependencies:
        _files(dependency, seen)
    if file.name not in seen:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        seen[file.name] = proto


def _raw_attributes(message: descriptor_pb2.DescriptorProto) -> None:
    for field in message.field:
        if field.type_name in (_KEY_VALUE, _EXEMPLAR):
            field.type = _BYTES
            field.ClearField("type_name")
    for nested in message.nested_type:
        _raw_attributes(nested)


def _build() -> Any:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    _files(metrics_service_pb2.DESCRIPTOR, files)
    pool = descriptor_pool.DescriptorPool()
    for proto in files.values():
        if proto.name.startswith("opentelemetry/proto/metrics/") or "resource" in proto.name:
            for message in proto.message_type:
                _raw_attributes(message)
        pool.Add(proto)
    name = "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


RawExportMetricsServiceRequest: Any = _build()
