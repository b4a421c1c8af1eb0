"""Errors, typed by what the caller does next.

```
ConnectorError
├── ConfigError              fix the configuration (SettingsError)
├── AuthError                fix the credentials; carries the AADSTS code
├── GraphError               .status .code .message .request_id .retry_after
│   ├── TransientGraphError  429, 503, 504, dropped connections: retried by the client, then surfaced
│   ├── DeltaResetRequired   410 / SyncStateNotFound / resyncRequired / SyncStateInvalid: resync the container
│   └── FatalGraphError      any other 4xx/5xx: the container fails, the rest carries on
├── UnreachableError         the authority or Graph cannot be reached at all
└── MalformedPageError       a page that is not Graph's shape (bad JSON, both links, a repeated link)
```
A bad *item* is not an exception of this tree: it is quarantined with its reason and the page goes on.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """The configuration is wrong; the message names the setting and the fix."""


class SettingsError(ConfigError):
    """A setting failed validation."""


class AuthError(ConnectorError):
    """The identity platform refused the credentials."""

    def __init__(self, message: str, aadsts: str | None = None) -> None:
        super().__init__(message)
        self.aadsts = aadsts


class UnreachableError(ConnectorError):
    """A host could not be reached (DNS, refused connection, TLS failure) after retries."""


class GraphError(ConnectorError):
    """Graph answered with an error."""

    def __init__(self, status: int, code: str, message: str, *, request_id: str | None = None,
                 retry_after: float | None = None, location: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.location = location


class TransientGraphError(GraphError):
    """Worth retrying after a wait (429, 503, 504, connection drops)."""


class DeltaResetRequired(GraphError):
    """The delta token is gone: drop the checkpoint and run a full round (graph-v1.md §2.7)."""


class FatalGraphError(GraphError):
    """Retrying will not help."""


class MalformedPageError(ConnectorError):
    """A page that breaks Graph's paging contract or is not JSON."""


_RESET_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid", "invaliddeltatoken"}


def classify(status: int, code: str, message: str, *, request_id: str | None = None,
             retry_after: float | None = None, location: str | None = None) -> GraphError:
    """The `GraphError` subclass for a status and Graph error code."""
    kind: type[GraphError]
    if status == 410 or code.lower() in _RESET_CODES and status in (400, 404, 410):
        kind = DeltaResetRequired
    elif status in (429, 503, 504) or (status >= 500 and code.lower() in {"serviceunavailable", "unknownerror"} and status != 501):
        kind = TransientGraphError
    else:
        kind = FatalGraphError
    return kind(status, code, message, request_id=request_id, retry_after=retry_after, location=location)
