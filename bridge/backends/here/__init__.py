"""HERE platform Pipeline API v2: its target settings, OAuth 1.0a tokens, client and states.

Activate ("schedule") a pipeline version, follow the operation and the job it starts,
cancel it; tokens from HERE's OAuth 1.0a-signed client-credentials endpoint.
"""

from ._client import HereBackend, here_error, request_header_id
from ._names import pipeline_segment, uuid_segment
from ._status import JOB_TO_STATE, job_of, run_status
from ._target import LOOKUP_URL, TOKEN_URL, HereCredentials, HereTarget, read_properties
from ._token import BAD_CREDENTIALS, CLOCK_SKEW, NONCE_REUSED, HereTokenSource

__all__ = [
    "BAD_CREDENTIALS",
    "CLOCK_SKEW",
    "JOB_TO_STATE",
    "LOOKUP_URL",
    "NONCE_REUSED",
    "TOKEN_URL",
    "HereBackend",
    "HereCredentials",
    "HereTarget",
    "HereTokenSource",
    "here_error",
    "job_of",
    "pipeline_segment",
    "read_properties",
    "request_header_id",
    "run_status",
    "uuid_segment",
]
