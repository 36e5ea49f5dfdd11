"""Marquez, the OpenLineage reference server: its target settings, client, states and names.

Runs API of Marquez 0.50: create a run of a job with a client-chosen id, read it, abort it.
"""

from ._client import MarquezBackend, run_id_for
from ._names import NAMESPACE, job_segment, namespace_segment, run_segment
from ._status import STATUS_TO_STATE, run_status
from ._target import ApiKeyCredential, BearerCredential, MarquezCredential, MarquezTarget

__all__ = [
    "NAMESPACE",
    "STATUS_TO_STATE",
    "ApiKeyCredential",
    "BearerCredential",
    "MarquezBackend",
    "MarquezCredential",
    "MarquezTarget",
    "job_segment",
    "namespace_segment",
    "run_id_for",
    "run_segment",
    "run_status",
]
