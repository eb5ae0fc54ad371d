"""Command-line tools the tests run, found on PATH or failing with how to install them."""

from __future__ import annotations

import shutil

import pytest


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: install the Debian package 'prometheus' "
            "(apt-get install --no-install-recommends prometheus; `make test` does this)"
        )
    return path
