"""Configuration: environment (`M365SYNC_*`), `.env`, and a YAML file (`--config` or `M365SYNC_CONFIG`).

Precedence, highest first: explicit arguments, environment, `.env`, the YAML file, defaults.
Secrets are `SecretStr` and never appear in logs, reprs or error messages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource
from pydantic_settings.exceptions import SettingsError as _SourceError

from .errors import SettingsError

Resource = Literal["mail", "calendar", "contacts", "tasks"]
ALL_RESOURCES: tuple[Resource, ...] = ("mail", "calendar", "contacts", "tasks")

_FIXES = {
    "tenant_id": "set M365SYNC_TENANT_ID to the directory (tenant) id or its domain",
    "client_id": "set M365SYNC_CLIENT_ID to the app registration's application (client) id",
    "mailboxes": "give a list of addresses, or `all` to sync every user with a mailbox",
    "resources": "choose from mail, calendar, contacts, tasks",
    "store_url": "use sqlite:///path/to/file.db",
    "page_size": "use a number from 1 to 1000",
    "mailbox_concurrency": "use 1 to 4 (Outlook allows 4 concurrent requests per mailbox)",
    "graph_url": "use an https URL ending in /v1.0",
    "authority_host": "use an https URL such as https://login.microsoftonline.com",
}


TrackOption = Literal["all", "responses", "known_parties", "email_enabled", "none"]
ItemTracking = Literal["all", "category"]
"""Which calendar events or To Do tasks are written: `all` synced ones, or only those carrying the tracking category."""
TRACK_OPTION_VALUE: dict[str, int] = {"all": 0, "responses": 1, "known_parties": 2, "email_enabled": 3, "none": 4}
"""`incomingemailfilteringmethod` value of each `track` option."""
MAX_TRACKED_FOLDERS = 25


class RegardingRef(BaseModel):
    """A regarding record: `{table, id}` or `{table, key: {alternate key column: value}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    id: str | None = None
    key: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one(self) -> RegardingRef:
        if (self.id is None) == (not self.key):
            raise ValueError("give exactly one of `id` or `key`")
        return self


class TrackedFolder(BaseModel):
    """A tracked folder under the Inbox (path such as inbox/Customers/Fabrikam), with an optional regarding record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    regarding: RegardingRef | None = None

    @property
    def key(self) -> str:
        """The normalised path (lower case, no surrounding slashes)."""
        return self.path.strip("/").lower()


class MailboxSettings(BaseModel):
    """One mailbox and its per-mailbox options. Tracking options left unset take the `tracking` defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str
    folders: list[str] = Field(default_factory=list)  # extra folders to sync, as paths such as inbox/Customers
    tracked_folders: list[TrackedFolder] = Field(default_factory=list)  # filled from `folders` entries under the Inbox
    track: TrackOption | None = None
    sent_items: bool | None = None
    category: str | None = Field(None, min_length=1, max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _split_folders(cls, data: Any) -> Any:
        """`folders` accepts paths or {path, regarding}: all are synced; those under the Inbox are tracked folders."""
        if not isinstance(data, dict) or "folders" not in data:
            return data
        data = dict(data)
        paths: list[Any] = []
        rules: list[Any] = list(data.get("tracked_folders") or [])
        for entry in data.get("folders") or []:
            spec = {"path": entry} if isinstance(entry, str) else entry
            if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
                paths.append(entry)  # let validation report it
                continue
            paths.append(spec["path"])
            if spec["path"].strip("/").lower().startswith("inbox/"):
                rules.append(spec)
        if len(rules) > MAX_TRACKED_FOLDERS:
            raise ValueError(f"{len(rules)} tracked folders; at most {MAX_TRACKED_FOLDERS} per mailbox")
        data["folders"], data["tracked_folders"] = paths, rules
        return data

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if "@" not in v:
            raise ValueError(f"{v!r} is not an email address")
        return v.strip()


class TokenSettings(BaseModel):
    """Tracking tokens (`CRM:0001001`): prefix, base number, digits for user numbers and for the counter."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    prefix: str = Field("CRM", min_length=1, max_length=20, pattern=r"^[^\s:]+$")
    previous_prefixes: list[str] = Field(default_factory=list)  # still honoured when parsing subjects
    base_number: int = Field(0, ge=0, le=2_147_483_647)
    user_digits: int = Field(3, ge=1, le=10)
    counter_digits: int = Field(3, ge=1, le=9)
    max_subject_length: int = Field(255, ge=20, le=800)  # subject + token on the mail server


class CorrelationSettings(BaseModel):
    """Which correlation methods run, in order: headers, token, conversation, smart matching."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    headers: bool = True  # In-Reply-To and References
    token: bool = True
    conversation: bool = True  # conversationIndex and Graph conversationId
    smart_matching: bool = False
    smart_max_words: int = Field(20, ge=1, le=100)
    smart_min_addresses: int = Field(2, ge=1, le=20)


class TrackingSettings(BaseModel):
    """Email tracking as server-side sync does it (see docs); `enabled: false` writes every synced message."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    track: TrackOption = "responses"  # default of every mailbox
    sent_items: bool = True
    category: str = Field("Tracked to Dynamics 365", min_length=1, max_length=255)
    token: TokenSettings = Field(default_factory=TokenSettings)
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings)
    two_activities_for_internal_mail: bool = True
    auto_create_contacts: bool = False
    ignore_auto_replies: bool = True
    unresolve_on_multiple_match: bool = False  # recipients
    unresolve_sender_on_multiple_match: bool = False
    max_attempts: int = Field(5, ge=1, le=50)  # then "<category> (Undeliverable)"
    # appointments and tasks (server-side-sync.md §2.8, §4.1): `all` writes every synced event / To Do task (no decision rows);
    # `category` writes only those carrying the mailbox's tracking category. Removing the category untracks the item without
    # deleting its record: the record is kept and unlinked (later changes and deletes in Outlook no longer reach it).
    events: ItemTracking = "all"
    tasks: ItemTracking = "all"


class Settings(BaseSettings):
    """Everything the sync engine needs. See the README for each setting."""

    model_config = SettingsConfigDict(env_prefix="M365SYNC_", env_file=".env", extra="forbid", env_nested_delimiter="__")

    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_certificate_path: Path | None = None
    client_certificate_password: SecretStr | None = None
    managed_identity: bool = False
    managed_identity_client_id: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: Path | None = None
    store_url: str = "sqlite:///m365sync.db"
    mailboxes: Annotated[Literal["all"] | list[MailboxSettings], NoDecode] = Field(default_factory=list)
    resources: Annotated[list[Resource], NoDecode] = Field(default_factory=lambda: list(ALL_RESOURCES))
    mail_folders: Literal["default", "all"] = "default"  # default: Inbox, Sent Items and configured folders
    calendar_past_days: int = Field(90, ge=0, le=3650)
    calendar_future_days: int = Field(365, ge=1, le=3650)
    page_size: int = Field(200, ge=1, le=1000)
    mailbox_concurrency: int = Field(4, ge=1, le=4)
    parallel_mailboxes: int = Field(4, ge=1, le=64)
    max_retries: int = Field(6, ge=0, le=20)
    request_timeout: float = Field(60.0, gt=0)
    mappings_dir: Path | None = None
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)

    @field_validator("mailboxes", mode="before")
    @classmethod
    def _mailboxes(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().startswith(("[", "{")):
            v = json.loads(v)  # env may carry JSON: M365SYNC_MAILBOXES='[{"address": "a@b.c", "track": "all"}]'
        if isinstance(v, str):
            if v.strip().lower() == "all":
                return "all"
            v = [s for s in v.replace(";", ",").split(",") if s.strip()]
        if isinstance(v, list):
            return [{"address": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().startswith("["):
            return json.loads(v)
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("graph_url", "authority_host")
    @classmethod
    def _https(cls, v: str) -> str:
        v = v.rstrip("/")
        if not v.startswith("https://"):
            raise ValueError("must be an https URL")
        return v

    @field_validator("store_url")
    @classmethod
    def _store(cls, v: str) -> str:
        if not (v.startswith("sqlite://") or v == ":memory:"):
            raise ValueError("only sqlite:/// stores are supported")
        return v

    @model_validator(mode="after")
    def _credential(self) -> Settings:
        if self.client_secret is not None and self.client_certificate_path is not None:
            raise ValueError("give either client_secret or client_certificate_path, not both")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the YAML file below the environment."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config = os.environ.get("M365SYNC_CONFIG")
        if config:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config))
        return (*sources, file_secret_settings)

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Read settings; `config` is a YAML file (else `M365SYNC_CONFIG`). Errors name the setting and the fix."""
        old = os.environ.get("M365SYNC_CONFIG")
        try:
            if config is not None:
                if not Path(config).is_file():
                    raise SettingsError(f"config file not found: {config}")
                os.environ["M365SYNC_CONFIG"] = str(config)
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None
        except (_SourceError, json.JSONDecodeError) as exc:
            raise SettingsError(f"cannot read the settings: {exc}") from None
        finally:
            if config is not None:
                if old is None:
                    os.environ.pop("M365SYNC_CONFIG", None)
                else:
                    os.environ["M365SYNC_CONFIG"] = old

    def mailbox(self, address: str) -> MailboxSettings:
        """The settings of one mailbox (defaults when it is not listed)."""
        if isinstance(self.mailboxes, list):
            for mb in self.mailboxes:
                if mb.address.lower() == address.lower():
                    return mb
        return MailboxSettings(address=address)

    def track_option(self, address: str) -> TrackOption:
        """The mailbox's `track` option (its own, else the `tracking` default)."""
        return self.mailbox(address).track or self.tracking.track

    def require_credentials(self) -> None:
        """Raise a `SettingsError` naming what is missing for a Graph connection."""
        missing = [n for n in ("tenant_id", "client_id") if not getattr(self, n) and not (n == "client_id" and self.managed_identity)]
        if not (self.client_secret or self.client_certificate_path or self.managed_identity):
            missing.append("client_secret")
        if missing:
            lines = [f"setting `{n}` (env M365SYNC_{n.upper()}) is missing: {_FIXES.get(n, 'set it')}" for n in missing]
            if "client_secret" in missing:
                lines[-1] = "no credential: set M365SYNC_CLIENT_SECRET, or M365SYNC_CLIENT_CERTIFICATE_PATH, or M365SYNC_MANAGED_IDENTITY=true"
            raise SettingsError("\n".join(lines))


def describe(exc: ValidationError) -> str:
    """One line per bad setting: its name, env variable, the problem and the fix. Values are not echoed."""
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "settings"
        where = ".".join(str(p) for p in err["loc"])
        fix = _FIXES.get(name, "")
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"setting `{where}` (env M365SYNC_{name.upper()}): {msg}" + (f"; fix: {fix}" if fix else ""))
    return "\n".join(lines)
