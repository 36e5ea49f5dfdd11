"""``runbridge``: run the bridge, publish run requests, check health."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from contracts import Request, RunCancelRequestedV1, RunRequestedV1

from . import health
from .cloudevents import EnvelopeMode
from .config import Settings
from .convert import request_record
from .errors import BridgeError, describe
from .service import Bridge


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Bridge(settings).run(stop)


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"runbridge: invalid configuration: {describe(exc)}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        asyncio.run(_run(settings))
    except BridgeError as exc:
        logging.getLogger("runbridge").error("cannot start: %s", exc)
        return 2
    return 0


def request_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run requests from a JSON file (one object or a list) or from flags: ``--run`` gives
    the system-specific part as JSON, ``--pipeline`` (with ``--param``) is ADF's shortcut."""
    if args.file:
        loaded = json.loads(Path(args.file).read_text())
        return loaded if isinstance(loaded, list) else [loaded]
    if not args.target or not (args.run or args.pipeline):
        raise SystemExit("send: give --file, or --target and --run (or ADF's --pipeline)")
    if args.run:
        run = json.loads(args.run)
    else:
        parameters = {}
        for item in args.param or []:
            name, _, value = item.partition("=")
            try:
                parameters[name] = json.loads(value)
            except json.JSONDecodeError:
                parameters[name] = value
        run = {"system": "adf", "pipelineName": args.pipeline, "parameters": parameters}
    request: dict[str, Any] = {
        "request_id": args.request_id or str(uuid.uuid4()),
        "target": args.target,
        "run": run,
    }
    if args.correlation_id:
        request["correlation_id"] = args.correlation_id
    return [request]


async def _send(
    settings: Settings,
    requests: list[dict[str, Any]],
    args: argparse.Namespace,
    contract: type[Request] = RunRequestedV1,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for data in requests:
            if not args.no_validate:
                contract.model_validate(data)
            value, headers = request_record(
                data,
                mode=EnvelopeMode(args.mode),
                source=args.source,
                event_type=contract.event_type,
            )
            key = (args.key or str(data.get("request_id"))).encode()
            await producer.send_and_wait(
                settings.requests_topic, value=value, key=key, headers=headers
            )
            print(json.dumps({"sent": data.get("request_id"), "topic": settings.requests_topic}))
    finally:
        await producer.stop()


def _cmd_send(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        asyncio.run(_send(settings, request_from_args(args), args))
    except ValidationError as exc:
        print(f"send: not a valid run request: {describe(exc)}", file=sys.stderr)
        return 2
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    """Publish a run-cancel-requested event, keyed like the request (its id by default)."""
    cancel: dict[str, Any] = {"request_id": args.request_id}
    if args.reason:
        cancel["reason"] = args.reason
    if args.recursive:
        cancel["options"] = {"system": "adf", "isRecursive": True}
    try:
        asyncio.run(_send(Settings(), [cancel], args, RunCancelRequestedV1))
    except ValidationError as exc:
        print(f"cancel: not a valid cancel request: {describe(exc)}", file=sys.stderr)
        return 2
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    """Healthy when the consumer loop wrote the health file recently and no partition that
    has work is stalled."""
    path = Settings().health_file
    if path is None:
        print("health: RUNBRIDGE_HEALTH_FILE is not set", file=sys.stderr)
        return 2
    healthy, detail = health.check(path, args.max_age)
    if not healthy:
        print(f"health: {detail}", file=sys.stderr)
        return 1
    return 0


def _cmd_asyncapi(args: argparse.Namespace) -> int:
    from .asyncapi import render

    sys.stdout.write(render(Settings()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runbridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("run", help="start the bridge (configured by RUNBRIDGE_* variables)")

    send = commands.add_parser("send", help="publish run requests to the request topic")
    send.add_argument("--file", help="JSON file: one run request, or a list of them")
    send.add_argument("--target")
    send.add_argument("--run", help="the system-specific part as JSON, with its 'system'")
    send.add_argument("--pipeline", help="ADF shortcut: the pipeline name")
    send.add_argument(
        "--param", action="append", help="ADF shortcut: NAME=VALUE (VALUE parsed as JSON)"
    )
    send.add_argument("--request-id")
    send.add_argument("--correlation-id")
    send.add_argument("--key", help="Kafka key (default: the request id)")
    send.add_argument("--mode", choices=[m.value for m in EnvelopeMode], default="binary")
    send.add_argument("--source", default="/runbridge/cli")
    send.add_argument("--no-validate", action="store_true", help="send even if invalid")

    cancel = commands.add_parser("cancel", help="ask for a request's run to be cancelled")
    cancel.add_argument("--request-id", required=True, help="the run request's id")
    cancel.add_argument("--reason", help="why, for the record")
    cancel.add_argument("--recursive", action="store_true", help="ADF: cancel child pipelines")
    cancel.add_argument("--key", help="Kafka key: the request's (default: the request id)")
    cancel.add_argument("--mode", choices=[m.value for m in EnvelopeMode], default="binary")
    cancel.add_argument("--source", default="/runbridge/cli")
    cancel.add_argument("--no-validate", action="store_true", help="send even if invalid")

    check = commands.add_parser(
        "health", help="exit 0 if the bridge polled Kafka recently and no partition is stalled"
    )
    check.add_argument("--max-age", type=float, default=60.0)

    commands.add_parser("asyncapi", help="print the AsyncAPI description of the topics")

    args = parser.parse_args(argv)
    handlers = {
        "run": _cmd_run,
        "send": _cmd_send,
        "cancel": _cmd_cancel,
        "health": _cmd_health,
        "asyncapi": _cmd_asyncapi,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
