"""How `make run` speaks: progress lines, and Fatal for what stops it."""

from __future__ import annotations


class Fatal(Exception):
    """Stops `make run` with one line on stderr: what is wrong and what to do."""


def say(message: str) -> None:
    print(f"make run: {message}", flush=True)
