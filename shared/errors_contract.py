"""The `error.v1` event contract: one error (an exception) an application reported.

Ingest makes one envelope per error, from `POST /v1/errors` (JSON) or from an OTLP log
record carrying `exception.*` attributes (`POST /v1/logs`); the writer stores it in the
`errors` table; the api groups it by fingerprint::

    {"id": "<uuidv7>", "type": "error.v1", "tenant": "acme",
     "occurred_at": "<when it happened (the sender's ts, else arrival)>",
     "received_at": "<when ingest received it>",
     "data": {"fingerprint": "3f2a...", "type": "ValueError", "message": "bad amount",
              "stack": "Traceback (most recent call last): ...",
              "labels": {"service": "checkout"}}}

Bounds: `message` <= 4096 characters, `type` <= 256, `stack` <= 32 KiB, `fingerprint`
1..128 of `[A-Za-z0-9_.:-]`, `labels` as a metric sample's (shared/samples.py: 64 labels,
Prometheus-style names, values <= 2048), no NUL anywhere (Postgres text can't hold one).
At least one of `type` and `message` is non-empty.

Fingerprints group occurrences of "the same error". A sender may give one (its own
grouping wins); otherwise ingest computes it (`compute_fingerprint`): the first 32 hex
digits of the SHA-256 of the type and the top `TOP_FRAMES` stack frames, each frame
normalised so that what changes between deploys or runs does not split a group:

- line and column numbers are dropped (`File "a.py", line 12, in f` -> `File "a.py", in f`;
  `at f (a.js:12:5)` -> `at f (a.js)`; `at a.B.f(B.java:42)` -> `at a.B.f(B.java)`), so
  the same error after an edit elsewhere in the file keeps its group;
- hexadecimal addresses (`0x7f3a...`, Go's `+0x1d`) are dropped;
- file paths and function names are kept: a different function is a different error.

"Top" means the innermost frames (where the error was raised): the last frames of a
Python traceback (most recent call last), the first of JavaScript / Java / .NET / Go ones.
Frame lines are recognised by shape (Python `File "...", line N`, `at ...`, Go's
`\tpath.go:N`, `#N ...`); source-code lines and the `Type: message` line are not frames.
With no frame at all, the message stands in for the frames, with its numbers, hex ids and
quoted strings masked (`order 123 not found` and `order 456 not found` group together).
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

import msgspec

from shared.samples import Labels

ERROR_V1 = "error.v1"

MAX_MESSAGE_LEN = 4096
MAX_TYPE_LEN = 256
MAX_STACK_LEN = 32 * 1024
MAX_FINGERPRINT_LEN = 128
TOP_FRAMES = 5
FINGERPRINT_HEX_DIGITS = 32

FINGERPRINT_PATTERN = r"^[A-Za-z0-9_.:-]+\Z"
_NO_NUL = r"^[^\x00]*\Z"
_FINGERPRINT = re.compile(FINGERPRINT_PATTERN)

Fingerprint = Annotated[
    str, msgspec.Meta(pattern=FINGERPRINT_PATTERN, min_length=1, max_length=MAX_FINGERPRINT_LEN)
]
ErrorType = Annotated[str, msgspec.Meta(pattern=_NO_NUL, max_length=MAX_TYPE_LEN)]
Message = Annotated[str, msgspec.Meta(pattern=_NO_NUL, max_length=MAX_MESSAGE_LEN)]
Stack = Annotated[str, msgspec.Meta(pattern=_NO_NUL, max_length=MAX_STACK_LEN)]


class ErrorContractError(ValueError):
    """An `error.v1` body does not match the contract; the message says where."""


class ErrorData(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The `data` of an `error.v1` envelope."""

    fingerprint: Fingerprint
    type: ErrorType = ""
    message: Message = ""
    stack: Stack = ""
    labels: Labels = {}

    def __post_init__(self) -> None:
        if not self.type and not self.message:
            raise ValueError("an error needs a type or a message")


def valid_fingerprint(value: str) -> bool:
    return 0 < len(value) <= MAX_FINGERPRINT_LEN and _FINGERPRINT.match(value) is not None


def validate_error_v1(data: Any) -> ErrorData:
    """Check the `data` of one `error.v1` envelope: the hook for
    `shared.contracts.validate_envelope`. Raises ErrorContractError."""
    try:
        return msgspec.convert(data, ErrorData)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$.", "`data.").replace("`$`", "`data`")
        raise ErrorContractError(message[:300]) from None


def error_v1_data(error: ErrorData) -> dict[str, Any]:
    """The `data` dict of an envelope (`shared.contracts.make_envelope`)."""
    return msgspec.to_builtins(error)


# --- fingerprints -----------------------------------------------------------------------

# A frame line, by the shapes the common runtimes print.
_PY_FRAME = re.compile(r'^\s*File ".*", line \d+')
_OTHER_FRAME = re.compile(r"^\s*(?:at\s+\S|#\d+\s)")
_GO_FILE = re.compile(r"^\t\S+\.go:\d+")  # after the line naming its function
# What changes between runs or deploys without making a different error.
_PY_LINE = re.compile(r", line \d+")
_LINE_COL = re.compile(r":\d+(?::\d+)?(?=[)\s]|$)")
_HEX = re.compile(r"\s*\+?0x[0-9a-fA-F]+")
_SPACE = re.compile(r"\s+")
# Message masking when there are no frames.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_HEXISH = re.compile(r"\b(?=[0-9a-fA-F-]*\d)[0-9a-fA-F][0-9a-fA-F-]{7,}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def top_frames(stack: str, count: int = TOP_FRAMES) -> list[str]:
    """The innermost `count` frames of `stack`, normalised (module docstring)."""
    lines = stack.splitlines()
    python = [line for line in lines if _PY_FRAME.match(line)]
    if python:
        frames = python[-count:][::-1]  # most recent call last: the innermost first
        return [_normalise(_PY_LINE.sub("", f)) for f in frames]
    frames = []
    for index, line in enumerate(lines):
        if _OTHER_FRAME.match(line):
            frames.append(line)
        elif index and _GO_FILE.match(line):
            frames.append(f"{lines[index - 1]} {line}")
    return [_normalise(f) for f in frames[:count]]


def _normalise(frame: str) -> str:
    frame = _HEX.sub("", frame)
    frame = _LINE_COL.sub("", frame)
    return _SPACE.sub(" ", frame).strip()


def mask_message(message: str) -> str:
    """`message` with what varies between occurrences masked: quoted strings, hex ids
    and UUIDs, numbers."""
    masked = _QUOTED.sub("<s>", message)
    masked = _HEXISH.sub("<id>", masked)
    return _NUMBER.sub("<n>", masked)


def compute_fingerprint(error_type: str, stack: str, message: str = "") -> str:
    """The fingerprint of an error its sender gave none (module docstring)."""
    frames = top_frames(stack)
    basis = frames if frames else [mask_message(message)]
    digest = hashlib.sha256("\n".join([error_type, *basis]).encode())
    return digest.hexdigest()[:FINGERPRINT_HEX_DIGITS]
