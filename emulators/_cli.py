"""The command line every emulator shares: settings from flags, then serve until signalled."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiohttp import web

from emulators._server import serve_until_signalled

C = TypeVar("C")


def parse_config(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    config_from_args: Callable[[argparse.Namespace], C],
    invalid: tuple[type[Exception], ...],
) -> tuple[argparse.Namespace, C]:
    """The arguments and the settings they make; ``invalid`` errors exit as usage errors."""
    args = parser.parse_args(argv)
    try:
        return args, config_from_args(args)
    except invalid as exc:
        parser.error(str(exc))


def serve(app: web.Application, args: argparse.Namespace, announce: Callable[[str], None]) -> int:
    """Serve on ``--host``/``--port`` until SIGINT or SIGTERM; ``--access-log`` logs requests."""
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(
        serve_until_signalled(
            app, args.host, args.port, on_listening=announce, access_log=args.access_log
        )
    )
    return 0
