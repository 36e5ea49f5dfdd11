"""Authentication for the run APIs, as ``httpx.Auth`` flows."""

from ._bearer import AccessToken, BearerTokenAuth, TokenSource
from .entra import ClientSecretTokenSource, ManagedIdentityTokenSource, token_source

__all__ = [
    "AccessToken",
    "BearerTokenAuth",
    "ClientSecretTokenSource",
    "ManagedIdentityTokenSource",
    "TokenSource",
    "token_source",
]
