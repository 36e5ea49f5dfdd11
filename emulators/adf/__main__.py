"""``python -m emulators.adf``: serve the ADF emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from emulators._cli import parse_config, serve
from emulators.adf._app import create_app
from emulators.adf._config import AdfEmulatorConfig, BucketSpec

_DEFAULTS = AdfEmulatorConfig()


def _client(value: str) -> tuple[str, str]:
    client_id, sep, secret = value.partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError(f"expected ID:SECRET, got {value!r}")
    return client_id, secret


def _pipeline_seconds(value: str) -> tuple[str, float]:
    name, sep, seconds = value.rpartition("=")
    try:
        parsed = float(seconds)
    except ValueError:
        parsed = -1.0
    if not sep or not name or parsed < 0:
        raise argparse.ArgumentTypeError(f"expected NAME=SECONDS, got {value!r}")
    return name, parsed


def _parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m emulators.adf",
        description="Azure Data Factory + Entra ID emulator on a local HTTP port.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    p.add_argument("--tenant", default=d.tenant_id)
    p.add_argument(
        "--client",
        type=_client,
        action="append",
        metavar="ID:SECRET",
        help="accepted client credentials, repeatable (default runbridge-local:local-secret)",
    )
    p.add_argument("--token-lifetime-seconds", type=int, default=d.token_lifetime_seconds)
    p.add_argument("--queue-seconds", type=float, default=d.queue_seconds)
    p.add_argument("--run-seconds", type=float, default=d.run_seconds)
    p.add_argument(
        "--pipeline-seconds",
        type=_pipeline_seconds,
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="run duration of one pipeline (overrides --run-seconds), repeatable",
    )
    p.add_argument("--cancel-seconds", type=float, default=d.cancel_seconds)
    p.add_argument("--latency-ms", type=float, default=d.latency_ms)
    p.add_argument("--latency-jitter-ms", type=float, default=d.latency_jitter_ms)
    p.add_argument("--read-capacity", type=int, default=d.read_bucket.capacity)
    p.add_argument("--read-refill", type=float, default=d.read_bucket.refill_per_second)
    p.add_argument("--write-capacity", type=int, default=d.write_bucket.capacity)
    p.add_argument("--write-refill", type=float, default=d.write_bucket.refill_per_second)
    p.add_argument(
        "--factory",
        action="append",
        metavar="SUBSCRIPTION/RESOURCE_GROUP/FACTORY",
        help="repeatable; when given, other factories and resource groups are 404 "
        "(default: all exist)",
    )
    p.add_argument(
        "--known-pipeline",
        action="append",
        metavar="NAME",
        help="repeatable; when given, other pipelines are 404 (default: all exist)",
    )
    p.add_argument(
        "--failing-pipeline", action="append", default=[], metavar="NAME", help="repeatable"
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help="seed for intermittent faults (None: unseeded)"
    )
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return p


def config_from_args(args: argparse.Namespace) -> AdfEmulatorConfig:
    return AdfEmulatorConfig(
        tenant_id=args.tenant,
        clients=dict(args.client) if args.client else dict(_DEFAULTS.clients),
        token_lifetime_seconds=args.token_lifetime_seconds,
        queue_seconds=args.queue_seconds,
        run_seconds=args.run_seconds,
        pipeline_seconds=dict(args.pipeline_seconds),
        cancel_seconds=args.cancel_seconds,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        read_bucket=BucketSpec(capacity=args.read_capacity, refill_per_second=args.read_refill),
        write_bucket=BucketSpec(capacity=args.write_capacity, refill_per_second=args.write_refill),
        factories=frozenset(args.factory) if args.factory else None,
        known_pipelines=frozenset(args.known_pipeline) if args.known_pipeline else None,
        failing_pipelines=frozenset(args.failing_pipeline),
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args, config = parse_config(_parser(), argv, config_from_args, (ValidationError,))

    def announce(url: str) -> None:
        print(f"ADF emulator listening on {url}", flush=True)

    return serve(create_app(config), args, announce)


if __name__ == "__main__":
    sys.exit(main())
