"""An ADF target: where its pipelines are and how to sign in (Microsoft Entra ID)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, SecretStr, model_validator

from contracts import System

from ..._settings import BudgetSpec, Strict, TrackingSpec, read_secret

ARM_SCOPE = "https://management.azure.com/.default"
ARM_RESOURCE = "https://management.azure.com/"


class ClientSecretCredential(Strict):
    """Microsoft Entra ID client credentials (a service principal's secret)."""

    type: Literal["client_secret"] = "client_secret"
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9.-]{1,128}$")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the secret."
    )
    client_secret_file: Path | None = None
    authority: str = "https://login.microsoftonline.com"
    scope: str = ARM_SCOPE

    @model_validator(mode="after")
    def _one_secret_source(self) -> ClientSecretCredential:
        sources = [self.client_secret, self.client_secret_env, self.client_secret_file]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(
                "give exactly one of client_secret, client_secret_env, client_secret_file"
            )
        return self

    @property
    def token_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"

    def resolve_secret(self) -> SecretStr:
        return read_secret(
            self.client_secret,
            self.client_secret_env,
            self.client_secret_file,
            what="client secret",
        )


class ManagedIdentityCredential(Strict):
    """An Azure managed identity, through the instance metadata service (IMDS)."""

    type: Literal["managed_identity"] = "managed_identity"
    client_id: str | None = Field(default=None, description="For a user-assigned identity.")
    endpoint: str = "http://169.254.169.254/metadata/identity/oauth2/token"
    resource: str = ARM_RESOURCE


AdfCredential = Annotated[
    ClientSecretCredential | ManagedIdentityCredential, Field(discriminator="type")
]


class AdfTarget(Strict):
    """One Azure Data Factory: where its pipelines are and how to sign in."""

    system: Literal[System.ADF] = System.ADF
    base_url: str = "https://management.azure.com"
    subscription_id: UUID = Field(
        description="A UUID: ARM answers every call of a target with another form with "
        "400 InvalidSubscriptionId, so it is checked at start-up."
    )
    resource_group: str
    factory: str
    credential: AdfCredential
    timeout_seconds: float = Field(default=30.0, gt=0)
    read_budget: BudgetSpec = Field(
        default_factory=BudgetSpec,
        description="Below ARM's 250 reads refilling 25/s per principal, to leave room.",
    )
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
