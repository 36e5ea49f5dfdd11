"""``python -m emulators.here``: serve the HERE platform emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from emulators._cli import parse_config, serve
from emulators.here._app import PIPELINE_BASE_PATH, TOKEN_PATH, create_app, listener_urls
from emulators.here._config import HereClient, HereEmulatorConfig, PipelineSpec

_DEFAULTS = HereEmulatorConfig()
_PIPELINES = TypeAdapter(tuple[PipelineSpec, ...])


def _client(value: str) -> tuple[str, HereClient]:
    """``KEY_ID:SECRET[:CLIENT_ID[:USER_ID]]``."""
    parts = value.split(":")
    if len(parts) < 2 or len(parts) > 4 or not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected KEY_ID:SECRET[:CLIENT_ID[:USER_ID]], got {value!r}"
        )
    key_id, secret = parts[0], parts[1]
    client_id = parts[2] if len(parts) > 2 else f"{key_id}-client"
    user_id = parts[3] if len(parts) > 3 else f"HERE-{uuid.uuid5(uuid.NAMESPACE_URL, key_id)}"
    return key_id, HereClient(secret=secret, client_id=client_id, user_id=user_id)


def _listener(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m emulators.here",
        description="HERE platform emulator (OAuth 1.0a token endpoint + Pipeline API v2) on a "
        "local HTTP port.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8082, help="0 picks a free port")
    p.add_argument(
        "--extra-listener",
        type=_listener,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also serve the same emulator there (e.g. a redirect target), repeatable",
    )
    p.add_argument("--org", default=d.org)
    p.add_argument(
        "--client",
        type=_client,
        action="append",
        metavar="KEY_ID:SECRET[:CLIENT_ID[:USER_ID]]",
        help="accepted access keys, repeatable (default runbridge-local-key:local-secret)",
    )
    p.add_argument(
        "--pipelines",
        type=Path,
        metavar="FILE",
        help="JSON list of pipelines: [{id, name, versions: [{id, job_seconds, job_failure, "
        "activation_failure, template_ready, input_catalogs, ...}]}] (default: one pipeline "
        "with one version, ids DEFAULT_PIPELINE_ID/DEFAULT_VERSION_ID)",
    )
    p.add_argument("--token-lifetime-seconds", type=int, default=d.token_lifetime_seconds)
    p.add_argument("--timestamp-skew-seconds", type=float, default=d.timestamp_skew_seconds)
    p.add_argument("--token-requests-per-window", type=int, default=d.token_requests_per_window)
    p.add_argument("--token-window-seconds", type=float, default=d.token_window_seconds)
    p.add_argument("--accept-seconds", type=float, default=d.accept_seconds)
    p.add_argument("--process-seconds", type=float, default=d.process_seconds)
    p.add_argument("--start-seconds", type=float, default=d.start_seconds)
    p.add_argument("--job-seconds", type=float, default=d.job_seconds)
    p.add_argument("--cancel-seconds", type=float, default=d.cancel_seconds)
    p.add_argument("--latency-ms", type=float, default=d.latency_ms)
    p.add_argument("--latency-jitter-ms", type=float, default=d.latency_jitter_ms)
    p.add_argument(
        "--seed", type=int, default=d.seed, help="seed for intermittent faults (None: unseeded)"
    )
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return p


def config_from_args(args: argparse.Namespace) -> HereEmulatorConfig:
    pipelines = _DEFAULTS.pipelines
    if args.pipelines is not None:
        pipelines = _PIPELINES.validate_python(json.loads(args.pipelines.read_text()))
    return HereEmulatorConfig(
        org=args.org,
        clients=dict(args.client) if args.client else dict(_DEFAULTS.clients),
        pipelines=pipelines,
        token_lifetime_seconds=args.token_lifetime_seconds,
        timestamp_skew_seconds=args.timestamp_skew_seconds,
        token_requests_per_window=args.token_requests_per_window,
        token_window_seconds=args.token_window_seconds,
        accept_seconds=args.accept_seconds,
        process_seconds=args.process_seconds,
        start_seconds=args.start_seconds,
        job_seconds=args.job_seconds,
        cancel_seconds=args.cancel_seconds,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    invalid = (ValidationError, ValueError, OSError)
    args, config = parse_config(_parser(), argv, config_from_args, invalid)
    app = create_app(config, extra_listeners=args.extra_listener)

    def announce(url: str) -> None:
        print(f"HERE emulator listening on {url}", flush=True)
        print(f"  Pipeline API base URL: {url}{PIPELINE_BASE_PATH}", flush=True)
        print(f"  token endpoint: {url}{TOKEN_PATH}", flush=True)
        for extra in listener_urls(app):
            print(f"  also listening on {extra}", flush=True)

    return serve(app, args, announce)


if __name__ == "__main__":
    sys.exit(main())
