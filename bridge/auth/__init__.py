"""Authentication for the run APIs, as ``httpx.Auth`` flows; each backend brings its own
token source (Entra ID for ADF, OAuth 1.0a-signed for HERE)."""

from ._bearer import AccessToken, BearerTokenAuth, TokenSource

__all__ = ["AccessToken", "BearerTokenAuth", "TokenSource"]
