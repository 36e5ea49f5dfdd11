"""Azure Data Factory: its target settings, client, status mapping and name rules.

Pipelines - Create Run (with the recovery options), Pipeline Runs - Get, Cancel and Query
by Factory, api-version 2018-06-01; tokens from Microsoft Entra ID.
"""

from ._client import API_VERSION, AdfBackend, cloud_error, create_run_request
from ._entra import ClientSecretTokenSource, ManagedIdentityTokenSource, token_source
from ._names import NAME_RULES, factory_path, segment
from ._status import STATUS_TO_STATE, run_status
from ._target import (
    ARM_RESOURCE,
    ARM_SCOPE,
    AdfCredential,
    AdfTarget,
    ClientSecretCredential,
    ManagedIdentityCredential,
)

__all__ = [
    "API_VERSION",
    "ARM_RESOURCE",
    "ARM_SCOPE",
    "NAME_RULES",
    "STATUS_TO_STATE",
    "AdfBackend",
    "AdfCredential",
    "AdfTarget",
    "ClientSecretCredential",
    "ClientSecretTokenSource",
    "ManagedIdentityCredential",
    "ManagedIdentityTokenSource",
    "cloud_error",
    "create_run_request",
    "factory_path",
    "run_status",
    "segment",
    "token_source",
]
