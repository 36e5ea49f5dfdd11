"""A Marquez target: where the server is, whether to create what is missing, how to sign in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from contracts import System

from ..._settings import BudgetSpec, Strict, TrackingSpec, read_secret


class _Secret(Strict):
    """A secret given inline (tests only), or read from an environment variable or file."""

    value: SecretStr | None = None
    value_env: str | None = None
    value_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> _Secret:
        given = [self.value, self.value_env, self.value_file]
        if sum(source is not None for source in given) != 1:
            raise ValueError("give exactly one of value, value_env, value_file")
        return self

    def resolve(self) -> SecretStr:
        return read_secret(self.value, self.value_env, self.value_file, what="Marquez credential")


class BearerCredential(_Secret):
    """``Authorization: Bearer <token>``, for a Marquez behind a gateway."""

    type: Literal["bearer"] = "bearer"


class ApiKeyCredential(_Secret):
    """An API key in a header of the gateway's choosing."""

    type: Literal["api_key"] = "api_key"
    header: str = Field(default="X-API-Key", pattern=r"^[A-Za-z0-9-]{1,64}$")


MarquezCredential = Annotated[BearerCredential | ApiKeyCredential, Field(discriminator="type")]


class MarquezTarget(Strict):
    """One Marquez server (the OpenLineage reference server)."""

    system: Literal[System.MARQUEZ] = System.MARQUEZ
    base_url: str = "http://localhost:5000"
    create_missing: bool = Field(
        default=False,
        description="Create the namespace and the job (type BATCH) before a run if Marquez "
        "answers 404 for them (ones that exist are left as they are); otherwise a missing "
        "one is REJECTED with Marquez's message.",
    )
    owner: str = Field(default="runbridge", description="Owner of namespaces it creates.")
    credential: MarquezCredential | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    read_budget: BudgetSpec = Field(default_factory=BudgetSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
