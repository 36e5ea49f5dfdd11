"""Run Bridge: run-request events from Kafka become runs of data pipelines.

The public surface: ``Bridge`` runs the service from ``Settings``; ``Engine`` is the
at-least-once, key-ordered consumer it is built on; ``Backend`` is what each run API
implements; every error the bridge raises on purpose is a ``BridgeError``.
"""

from .backends import AdfBackend, AdfTarget, Backend, CreatedRun, RunStatus, Target, create_backend
from .cloudevents import CloudEvent, EnvelopeMode
from .config import RetryPolicy, Settings
from .engine import Engine
from .errors import (
    AuthenticationFailed,
    BackendError,
    BackendRejected,
    BridgeError,
    ConfigurationError,
    InputError,
    OutcomeUnknown,
    RetriesExhausted,
    TransientBackendError,
)
from .service import Bridge

__version__ = "0.1.0"

__all__ = [
    "AdfBackend",
    "AdfTarget",
    "AuthenticationFailed",
    "Backend",
    "BackendError",
    "BackendRejected",
    "Bridge",
    "BridgeError",
    "CloudEvent",
    "ConfigurationError",
    "CreatedRun",
    "Engine",
    "EnvelopeMode",
    "InputError",
    "OutcomeUnknown",
    "RetriesExhausted",
    "RetryPolicy",
    "RunStatus",
    "Settings",
    "Target",
    "TransientBackendError",
    "create_backend",
]
