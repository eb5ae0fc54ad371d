"""`make run` from start to end (the steps are in devtools/run/__init__.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import replace

from devtools import ROOT
from devtools.run.config import DEV_KEY_FILE, Config
from devtools.run.deps import Dependency, Postgres, RabbitMQ, ensure_up
from devtools.run.fatal import Fatal, say
from devtools.run.prepare import dev_api_keys, ops_channel, prepare
from devtools.run.supervisor import check_ports, supervise
from shared.settings import SettingsError
from shared.signing import SigningKeys


async def main() -> int:
    # Our own lines say what failed; the client libraries' reconnect chatter would repeat it.
    for noisy in ("aio_pika", "aiormq", "asyncpg"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        config = Config.from_env(os.environ)
        if config.dev_key:
            kid = SigningKeys.parse(config.signing_keys).active
            say(
                f"CLICK_SIGNING_KEYS is unset: using the dev key {kid!r} from "
                f"{DEV_KEY_FILE.relative_to(ROOT)} (never use it in production)"
            )
        await check_ports(config)
        common = config.common
        if not await servers_up([Postgres(common.database_url), RabbitMQ(common.amqp_url)]):
            return 1
        for line in await prepare(common):
            say(line)
        config = replace(
            config,
            api_keys=await dev_api_keys(common.database_url),
            ops_channel_type=await ops_channel(common.database_url),
        )
        return await supervise(config)
    except (Fatal, SettingsError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1


async def servers_up(deps: list[Dependency]) -> bool:
    """Every server up (said on one line), or each one's problem on stderr: False."""
    results = await asyncio.gather(*(ensure_up(d) for d in deps), return_exceptions=True)
    problems = [r for r in results if isinstance(r, BaseException)]
    for problem in problems:
        if not isinstance(problem, Fatal):
            raise problem
        print(f"make run: {problem}", file=sys.stderr)
    if problems:
        return False
    say("  ".join(f"{d.name} up at {d.address}." for d in deps))
    return True


def run() -> int:
    """The exit status of `make run`."""
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C before the services started: nothing to stop
        return 130
