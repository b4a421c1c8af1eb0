"""Scenario files: the YAML that describes an emulated tenant, its apps, users and content."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..yamlfile import load_model

Strict = ConfigDict(extra="forbid")


class TenantSpec(BaseModel):
    """The directory: id and default domain."""

    model_config = Strict
    id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    domain: str = "contoso.com"


class AppSpec(BaseModel):
    """An app registration with its credentials and granted application permissions."""

    model_config = Strict
    client_id: str
    display_name: str | None = None
    client_secret: str | None = None
    certificate: str | None = None  # path of a PEM public certificate, relative to the scenario file
    permissions: list[str] = Field(default_factory=list)  # application roles (Mail.Read, ...)
    scopes: list[str] = Field(default_factory=list)  # delegated scopes for device-code sign-in
    public_client: bool = False
    mailboxes: list[str] | None = None  # application access policy: only these mailboxes


class IdentitySpec(BaseModel):
    """Token service behaviour."""

    model_config = Strict
    token_lifetime: int = Field(3599, ge=1)  # seconds; short values force refreshes
    device_code_interval: int = Field(5, ge=0)
    device_code_lifetime: int = Field(900, ge=1)


class ThrottlingSpec(BaseModel):
    """Outlook's per (app, mailbox) limits (graph-v1.md §4.1)."""

    model_config = Strict
    mailbox_concurrency: int = Field(4, ge=1)
    requests_per_window: int = Field(10_000, ge=1)
    window_seconds: float = Field(600, gt=0)


class DeltaSpec(BaseModel):
    """Sync-state behaviour."""

    model_config = Strict
    ring_size: int = Field(256, ge=2)
    expired_code: Literal["SyncStateNotFound", "SyncStateInvalid", "resyncRequired"] = "SyncStateNotFound"
    expired_location: bool = False
    replays: int = Field(0, ge=0)


class FolderSpec(BaseModel):
    """A mail folder with its messages and child folders."""

    model_config = Strict
    displayName: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)
    childFolders: dict[str, FolderSpec] = Field(default_factory=dict)


class ContactFolderSpec(BaseModel):
    """A contact folder (other than the default "Contacts")."""

    model_config = Strict
    contacts: list[dict[str, Any]] = Field(default_factory=list)


class TodoListSpec(BaseModel):
    """A To Do list with its tasks."""

    model_config = Strict
    displayName: str
    wellknownListName: Literal["none", "defaultList", "flaggedEmails"] = "none"
    isOwner: bool = True
    isShared: bool = False
    tasks: list[dict[str, Any]] = Field(default_factory=list)


class TodoSpec(BaseModel):
    """To Do content of a user."""

    model_config = Strict
    lists: list[TodoListSpec] = Field(default_factory=list)


class UserSpec(BaseModel):
    """A user and the content of their mailbox, written in Graph's own JSON shapes."""

    model_config = Strict
    userPrincipalName: str
    id: str | None = None
    displayName: str | None = None
    givenName: str | None = None
    surname: str | None = None
    mail: str | None = None
    jobTitle: str | None = None
    department: str | None = None
    proxyAddresses: list[str] = Field(default_factory=list)
    hasMailbox: bool = True
    mailFolders: dict[str, FolderSpec] = Field(default_factory=dict)
    masterCategories: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    contacts: list[dict[str, Any]] = Field(default_factory=list)
    contactFolders: dict[str, ContactFolderSpec] = Field(default_factory=dict)
    todo: TodoSpec = Field(default_factory=TodoSpec)

    @model_validator(mode="after")
    def _defaults(self) -> UserSpec:
        if self.id is None:
            self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{self.userPrincipalName.lower()}"))
        if self.mail is None and self.hasMailbox:
            self.mail = self.userPrincipalName
        return self


class GenerateSpec(BaseModel):
    """Deterministic bulk content added to the scenario."""

    model_config = Strict
    seed: int = 1
    users: int = Field(0, ge=0)  # extra generated users (gen001@domain, ...)
    messages: int = Field(0, ge=0)  # per mailbox
    events: int = Field(0, ge=0)
    contacts: int = Field(0, ge=0)
    tasks: int = Field(0, ge=0)
    mailboxes: list[str] | None = None  # which mailboxes get content (default: all)
    folders: list[str] = Field(default_factory=lambda: ["inbox"])  # spread messages over these folder paths


class FaultMatch(BaseModel):
    """Which requests a fault rule applies to."""

    model_config = Strict
    method: str | None = None
    path: str = "*"  # glob over the request path (and query) as sent
    user: str | None = None


class FaultResponse(BaseModel):
    """A canned response a fault rule answers with."""

    model_config = Strict
    status: int
    retry_after: float | str | None = None
    code: str | None = None
    message: str | None = None
    body: Any = None


class FaultSpec(BaseModel):
    """`{match, skip, times, respond | delay_ms | reset}`."""

    model_config = Strict
    match: FaultMatch = Field(default_factory=FaultMatch)
    skip: int = Field(0, ge=0)
    times: int | None = Field(None, ge=1)
    respond: FaultResponse | None = None
    delay_ms: int | None = Field(None, ge=0)
    reset: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> FaultSpec:
        actions = [self.respond is not None, self.delay_ms is not None, self.reset]
        if sum(actions) != 1:
            raise ValueError("a fault needs exactly one of respond, delay_ms or reset")
        return self


class Scenario(BaseModel):
    """A whole emulated tenant."""

    model_config = Strict
    tenant: TenantSpec = Field(default_factory=TenantSpec)
    identity: IdentitySpec = Field(default_factory=IdentitySpec)
    apps: list[AppSpec] = Field(default_factory=list)
    throttling: ThrottlingSpec = Field(default_factory=ThrottlingSpec)
    delta: DeltaSpec = Field(default_factory=DeltaSpec)
    users: list[UserSpec] = Field(default_factory=list)
    generate: GenerateSpec | None = None
    faults: list[FaultSpec] = Field(default_factory=list)
    base_dir: Path | None = Field(None, exclude=True)  # where relative paths resolve; set by load_scenario

    def resolve(self, rel: str) -> Path:
        """A path from the scenario, relative to the scenario file."""
        p = Path(rel)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors name the file, line and field."""
    path = Path(path)
    scenario, _ = load_model(path, Scenario)
    assert isinstance(scenario, Scenario)
    scenario.base_dir = path.resolve().parent
    return scenario
