"""Pydantic models of mapping files: the single source of truth for the YAML format and its JSON Schema.

A file is either a ``Mapping`` (a complete Graph resource -> Dataverse table mapping) or a
``MappingOverlay`` (changes to a shipped mapping, merged by mapping name and column name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

from connector.mapping.paths import path_error

Scalar = Union[bool, int, float, str]
Direction = Literal["to_dataverse", "to_graph", "both", "none"]
DeletePolicy = Literal["keep", "deactivate", "cancel", "delete"]
SourceKind = Literal["message", "event", "contact", "todoTask"]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
LogicalName = Annotated[str, Field(pattern=NAME_PATTERN)]


def _check_path(value: str) -> str:
    err = path_error(value)
    if err:
        raise ValueError(err)
    return value


SourcePath = Annotated[str, AfterValidator(_check_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- transforms (closed vocabulary; behaviour lives in transforms.py) ------------------------


class UtcDateTime(_Model):
    """ISO-8601 string or Graph ``dateTimeTimeZone`` -> ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""

    type: Literal["utc_datetime"]


class DateOnly(_Model):
    """Date or date-time (or ``dateTimeTimeZone``) -> ``YYYY-MM-DD`` in its own zone."""

    type: Literal["date_only"]


class ToBool(_Model):
    """Loose boolean: true/false, "true"/"false", 1/0, "yes"/"no"; anything else -> null."""

    type: Literal["to_bool"]


class ToInt(_Model):
    """Loose integer: ints, integral floats, numeric strings, booleans; else null."""

    type: Literal["to_int"]


class OptionMap(_Model):
    """Map a Graph enum value (case-insensitive) to a choice value; unknown -> ``default``."""

    type: Literal["option_map"]
    map: dict[str, Scalar]
    default: Scalar | None = None


class TruncateFlag(_Model):
    """Column set to ``value`` on the same record when truncation happened."""

    column: LogicalName
    value: Scalar


class Truncate(_Model):
    """Cut text to ``max_length`` (default: the target column's max length)."""

    type: Literal["truncate"]
    max_length: Annotated[int, Field(ge=1)] | None = None
    flag: TruncateFlag | None = None


class HtmlToText(_Model):
    """HTML (or a Graph ``itemBody``) -> plain text; text bodies pass unchanged."""

    type: Literal["html_to_text"]


class Join(_Model):
    """Join a list of strings with ``separator``; an empty list -> null."""

    type: Literal["join"]
    separator: str = "; "


class First(_Model):
    """First non-null element of a list."""

    type: Literal["first"]


class Pluck(_Model):
    """Read ``path`` from every element of a list."""

    type: Literal["pluck"]
    path: SourcePath


class Count(_Model):
    """Length of a list (null -> null)."""

    type: Literal["count"]


class Lower(_Model):
    """Lower-case a string."""

    type: Literal["lower"]


class Const(_Model):
    """Ignore the input and produce ``value``."""

    type: Literal["const"]
    value: Scalar


class When(_Model):
    """If ``field`` equals ``equals`` (or one of a list) produce ``then``, else ``else`` (or the input)."""

    type: Literal["when"]
    field: SourcePath
    equals: Scalar | list[Scalar] | None
    then: Scalar | None
    else_: Scalar | None = Field(default=None, alias="else")


class Coalesce(_Model):
    """If the value is null or empty, take the first non-empty value of ``paths``."""

    type: Literal["coalesce"]
    paths: Annotated[list[SourcePath], Field(min_length=1)]


class EmailAddress(_Model):
    """Normalise an e-mail address: trim, drop ``mailto:`` and ``<>``, lower-case."""

    type: Literal["email_address"]


class MessageId(_Model):
    """Normalise an RFC 5322 Message-ID: trim, drop ``<>``, lower-case the domain."""

    type: Literal["message_id"]


class TrackingToken(_Model):
    """Extract a Dataverse tracking token (``CRM:0001001``) from a subject; last one wins."""

    type: Literal["tracking_token"]
    prefixes: Annotated[list[Annotated[str, Field(min_length=1, max_length=20)]], Field(min_length=1)] = ["CRM"]


class Header(_Model):
    """Value of an internet message header (case-insensitive name) from ``internetMessageHeaders``."""

    type: Literal["header"]
    name: Annotated[str, Field(min_length=1)]


class MatchesMailbox(_Model):
    """True if the value is the synced mailbox's address (case-insensitive)."""

    type: Literal["matches_mailbox"]


class LookupRef(_Model):
    """Primary key of the existing ``table`` record whose ``column`` equals the value (store hook)."""

    type: Literal["lookup"]
    table: LogicalName
    column: LogicalName


TransformModel = Annotated[
    Union[
        UtcDateTime, DateOnly, ToBool, ToInt, OptionMap, Truncate, HtmlToText, Join, First, Pluck,
        Count, Lower, Const, When, Coalesce, EmailAddress, MessageId, TrackingToken, Header,
        MatchesMailbox, LookupRef,
    ],
    Field(discriminator="type"),
]

BARE_TRANSFORMS = (
    "utc_datetime", "date_only", "to_bool", "to_int", "truncate", "html_to_text", "join", "first",
    "count", "lower", "email_address", "message_id", "tracking_token", "matches_mailbox",
)
BareTransform = Literal[
    "utc_datetime", "date_only", "to_bool", "to_int", "truncate", "html_to_text", "join", "first",
    "count", "lower", "email_address", "message_id", "tracking_token", "matches_mailbox",
]


def _bare_to_dict(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


TransformStep = Annotated[
    TransformModel,
    BeforeValidator(_bare_to_dict, json_schema_input_type=Union[BareTransform, TransformModel]),
]

# --- rules ---------------------------------------------------------------------------------------


class ColumnRule(_Model):
    """How one target column is produced from the Graph item."""

    source: SourcePath | None = None
    transforms: list[TransformStep] = []
    default: Scalar | None = None
    direction: Direction = "to_dataverse"
    description: str | None = None


class KeyPart(_Model):
    """One component of a deterministic key."""

    source: SourcePath
    transforms: list[TransformStep] = []
    required: bool = True


class KeySpec(_Model):
    """Record key = UUIDv5 over ``parts`` (``fallback`` when a required part is missing)."""

    parts: Annotated[list[KeyPart], Field(min_length=1)]
    fallback: list[KeyPart] = []


class Condition(_Model):
    """Keep list elements whose ``field`` equals ``equals`` (or one of a list)."""

    field: SourcePath
    equals: Scalar | list[Scalar]


class PartyRule(_Model):
    """A party list (``from``, ``to``, ``requiredattendees`` ...) -> ``activityparty`` rows."""

    source: SourcePath
    address: SourcePath = "emailAddress.address"
    where: Condition | None = None
    direction: Direction = "to_dataverse"


class CustomColumn(_Model):
    """Declaration of a custom (publisher-prefixed) column, e.g. ``new_graphsource``."""

    type: Literal[
        "String", "Memo", "Integer", "BigInt", "Double", "Decimal", "Money", "Boolean", "DateTime",
        "Picklist", "Uniqueidentifier", "Lookup",
    ]
    max_length: Annotated[int, Field(ge=1)] | None = None
    min: float | None = None
    max: float | None = None
    options: dict[int, str] | None = None
    targets: list[LogicalName] = []
    date_only: bool = False
    writable: bool = True


class CustomTable(_Model):
    """Declaration of a custom target table (its name is the mapping's ``target``)."""

    primary_key: LogicalName
    primary_name: LogicalName | None = None
    columns: dict[LogicalName, CustomColumn] = {}


class Mapping(_Model):
    """A complete mapping of one Graph resource onto one Dataverse table."""

    version: Literal[1]
    kind: Literal["Mapping"]
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    description: str | None = None
    source: SourceKind
    target: LogicalName
    delete_policy: DeletePolicy | None = None
    key: KeySpec
    columns: dict[LogicalName, ColumnRule]
    parties: dict[LogicalName, PartyRule] = {}
    custom_columns: dict[LogicalName, CustomColumn] = {}
    custom_table: CustomTable | None = None


class MappingOverlay(_Model):
    """Changes to an existing mapping: columns and parties merge by name (``null`` removes one)."""

    version: Literal[1]
    kind: Literal["MappingOverlay"]
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    description: str | None = None
    delete_policy: DeletePolicy | None = None
    columns: dict[LogicalName, ColumnRule | None] = {}
    parties: dict[LogicalName, PartyRule | None] = {}
    custom_columns: dict[LogicalName, CustomColumn] = {}


MappingFile = Annotated[Union[Mapping, MappingOverlay], Field(discriminator="kind")]
MAPPING_FILE_ADAPTER: TypeAdapter[Mapping | MappingOverlay] = TypeAdapter(MappingFile)


def json_schema() -> dict[str, Any]:
    """JSON Schema of mapping files (committed as ``mappings/schema/mapping.schema.json``)."""
    schema = MAPPING_FILE_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "m365-dataverse-connector mapping file"
    return schema
