"""A HERE platform target: where the Pipeline API is, and the credentials that get tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from contracts import System

from ..._settings import BudgetSpec, Strict, TrackingSpec, read_secret
from ...errors import ConfigurationError

TOKEN_URL = "https://account.api.here.com/oauth2/token"
LOOKUP_URL = "https://api-lookup.data.api.platform.here.com/lookup/v1/platform/apis/pipelines/v2"


def read_properties(path: Path) -> dict[str, str]:
    """A Java properties file as HERE writes ``credentials.properties``: key = value."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut > 0:
            values[line[:cut].strip()] = line[cut + 1 :].strip()
    return values


class HereCredentials(Strict):
    """An app's access key, from ``credentials.properties`` or given here (secret from an
    environment variable or file; inline only in tests)."""

    file: Path | None = Field(default=None, description="credentials.properties")
    access_key_id: str | None = None
    access_key_secret: SecretStr | None = None
    access_key_secret_env: str | None = None
    access_key_secret_file: Path | None = None
    token_endpoint_url: str | None = None
    client_id: str | None = Field(
        default=None,
        description="The app's client id (here.client.id in credentials.properties, which is "
        "read when this is absent): HERE names it as clientId on the operations the app "
        "requests, so that a lost activate answer is not mistaken for another app's.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> HereCredentials:
        secrets = [self.access_key_secret, self.access_key_secret_env, self.access_key_secret_file]
        given = sum(source is not None for source in secrets)
        if self.file is not None and (given or self.access_key_id):
            raise ValueError("give file, or access_key_id with its secret, not both")
        if self.file is None and (given != 1 or not self.access_key_id):
            raise ValueError(
                "give file, or access_key_id and one of access_key_secret, "
                "access_key_secret_env, access_key_secret_file"
            )
        return self

    def resolve(self) -> tuple[str, SecretStr, str]:
        """The access key id, its secret, and the token endpoint."""
        if self.file is not None:
            found = read_properties(self.file)
            try:
                key, secret = found["here.access.key.id"], found["here.access.key.secret"]
            except KeyError as exc:
                raise ConfigurationError(f"{self.file} has no {exc.args[0]}") from None
            url = self.token_endpoint_url or found.get("here.token.endpoint.url") or TOKEN_URL
            return key, SecretStr(secret), url
        assert self.access_key_id is not None
        return self.access_key_id, self._secret(), self.token_endpoint_url or TOKEN_URL

    def app_client_id(self) -> str | None:
        """The app's client id, if it is given or the properties file has it."""
        if self.client_id is not None or self.file is None:
            return self.client_id or None
        return read_properties(self.file).get("here.client.id") or None

    def _secret(self) -> SecretStr:
        return read_secret(
            self.access_key_secret,
            self.access_key_secret_env,
            self.access_key_secret_file,
            what="access key secret",
        )


class HereTarget(Strict):
    """One HERE platform project's Pipeline API."""

    system: Literal[System.HERE] = System.HERE
    base_url: str | None = Field(
        default=None,
        description="e.g. https://pipelines.api.platform.here.com/pipeline-service; when "
        "absent it is asked of the API Lookup service (lookup_url).",
    )
    lookup_url: str = LOOKUP_URL
    credentials: HereCredentials
    scope: str | None = Field(
        default=None,
        pattern=r"^hrn:[a-z-]+:authorization::[A-Za-z0-9._-]+:project/[A-Za-z0-9._-]+$",
        description="A project HRN: tokens are for that project only.",
    )
    allowed_redirect_hosts: frozenset[str] = Field(
        default=frozenset(),
        description="Hosts a 307 may send a call to, besides the base URL's own (any case); "
        "never from https to http.",
    )
    timeout_seconds: float = Field(default=30.0, gt=0)
    read_budget: BudgetSpec = Field(default_factory=BudgetSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    def allowed_hosts(self, base_url: str) -> frozenset[str]:
        """Where a 307 may send a call, lower-cased (host names are compared so)."""
        host = urlsplit(base_url).hostname  # lower-cased by urlsplit
        configured = {name.lower() for name in self.allowed_redirect_hosts}
        return frozenset(configured | ({host} if host else set()))
