"""Load mapping YAML files: parse with line info, validate, overlay user files, compile.

Problems are reported as ``file:line:col: problem (hint)``: the YAML is composed into a node
tree so pydantic ``loc`` paths and schema issues can be mapped back to node marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping as AbcMapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from connector.mapping import models as m
from connector.mapping.compiler import CompiledMapping, compile_mapping
from connector.mapping.errors import MappingValidationError, Problem
from connector.mapping.records import MappingContext, Record
from connector.mapping.resources import shipped_mappings_dir
from connector.mapping.schema_data import TableInfo, load_tables
from connector.mapping.transforms import REGISTRY
from connector.mapping.validation import Loc, check_mapping

YAML_SUFFIXES = (".yaml", ".yml")
_ALIASES = {"else_": "else"}


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed YAML file with its node tree (for error locations)."""

    name: str
    root: yaml.Node | None
    data: Any


def node_mark(root: yaml.Node | None, loc: Loc) -> tuple[int, int]:
    """1-based ``(line, col)`` of the node ``loc`` points at (nearest existing ancestor)."""
    if root is None:
        return 1, 1
    node: yaml.Node = root
    mark_node: yaml.Node = root
    for part in loc:
        part = _ALIASES.get(str(part), part) if isinstance(part, str) else part
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(part):
                    node, mark_node = v, k
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = mark_node = node.value[part]
        # Anything else is a pydantic union label ("Mapping", "truncate", ...): skip it.
    return mark_node.start_mark.line + 1, mark_node.start_mark.column + 1


def _problem(doc: Document, loc: Loc, message: str, hint: str = "") -> Problem:
    line, col = node_mark(doc.root, loc)
    return Problem(doc.name, line, col, message, hint)


def parse_document(name: str, text: str) -> tuple[Document | None, list[Problem]]:
    """Parse YAML text, keeping its node tree; YAML syntax errors become problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Problem(name, line, col, f"YAML syntax error: {exc.problem or exc}", "check indentation and quoting")]
    doc = Document(name, root, data)
    if not isinstance(data, dict):
        return None, [Problem(name, 1, 1, "a mapping file must be a YAML mapping", "start with 'version: 1'")]
    if isinstance(root, yaml.MappingNode) and root.value and root.value[0][0].value != "version":
        return doc, [_problem(doc, (), "a mapping file must start with 'version: 1'", "move 'version: 1' to the top")]
    return doc, []


def _pydantic_problem(doc: Document, err: Any) -> Problem:
    loc = tuple(err["loc"])
    etype = err["type"]
    msg = err["msg"]
    hint = ""
    if etype == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        if "kind" in str(err.get("ctx", {}).get("discriminator", "")):
            msg, hint = f"unknown kind {tag!r}", "use kind: Mapping or kind: MappingOverlay"
        else:
            msg, hint = f"unknown transform {tag!r}", "known transforms: " + ", ".join(sorted(REGISTRY))
    elif etype == "union_tag_not_found":
        if loc:
            msg, hint = "transform has no 'type'", "write e.g. {type: truncate} or just truncate"
        else:
            msg, hint = "missing 'kind'", "add kind: Mapping or kind: MappingOverlay"
    elif etype == "extra_forbidden":
        msg, hint = f"unknown key {str(loc[-1])!r}", "remove it or check the spelling"
    elif etype == "missing":
        msg, hint = f"missing required key {str(loc[-1])!r}", ""
    elif etype == "value_error":
        msg = msg.removeprefix("Value error, ")
        hint = "paths look like body.content or toRecipients[0].emailAddress.address"
    elif etype == "literal_error":
        hint = f"got {err.get('input')!r}"
    elif etype == "string_pattern_mismatch":
        msg, hint = f"invalid name {err.get('input')!r}", "use lower-case logical names like new_graphsource"
    return _problem(doc, loc, msg, hint)


def validate_document(doc: Document) -> tuple[m.Mapping | m.MappingOverlay | None, list[Problem]]:
    """Validate a parsed document against the pydantic models."""
    try:
        return m.MAPPING_FILE_ADAPTER.validate_python(doc.data), []
    except ValidationError as exc:
        return None, [_pydantic_problem(doc, e) for e in exc.errors()]


@dataclass(slots=True)
class _Entry:
    mapping: m.Mapping
    doc: Document
    overrides: dict[Loc, Document] = field(default_factory=dict)

    def doc_for(self, loc: Loc) -> Document:
        for n in (3, 2, 1):
            if loc[:n] in self.overrides:
                return self.overrides[loc[:n]]
        return self.doc


def _iter_yaml(directory: Traversable | Path) -> list[tuple[str, str]]:
    files = [f for f in directory.iterdir() if f.is_file() and f.name.endswith(YAML_SUFFIXES)]
    out = []
    for f in sorted(files, key=lambda f: f.name):
        name = str(f) if isinstance(f, Path) else f"mappings/{f.name}"
        out.append((name, f.read_text(encoding="utf-8")))
    return out


def _merge(entry: _Entry, overlay: m.MappingOverlay, doc: Document) -> None:
    base = entry.mapping
    columns = dict(base.columns)
    for name, rule in overlay.columns.items():
        entry.overrides[("columns", name)] = doc
        if rule is None:
            columns.pop(name, None)
        elif name in columns:
            columns[name] = columns[name].model_copy(update={f: getattr(rule, f) for f in rule.model_fields_set})
        else:
            columns[name] = rule
    parties = dict(base.parties)
    for name, prule in overlay.parties.items():
        entry.overrides[("parties", name)] = doc
        if prule is None:
            parties.pop(name, None)
        else:
            parties[name] = prule
    custom = dict(base.custom_columns)
    for name, decl in overlay.custom_columns.items():
        entry.overrides[("custom_columns", name)] = doc
        custom[name] = decl
    update: dict[str, Any] = {"columns": columns, "parties": parties, "custom_columns": custom}
    if overlay.delete_policy is not None:
        update["delete_policy"] = overlay.delete_policy
        entry.overrides[("delete_policy",)] = doc
    entry.mapping = base.model_copy(update=update)


@dataclass(slots=True)
class MappingSet:
    """All active mappings, compiled, plus the effective Dataverse tables (custom ones included)."""

    mappings: dict[str, CompiledMapping]
    tables: dict[str, TableInfo]

    def for_source(self, source: str) -> list[CompiledMapping]:
        """Mappings whose Graph source resource is ``source`` (message, event, contact, todoTask)."""
        return [cm for cm in self.mappings.values() if cm.source == source]

    def map_item(self, source: str, item: dict[str, Any], ctx: MappingContext) -> list[Record]:
        """Records all mappings of ``source`` produce for one item (all or nothing)."""
        out: list[Record] = []
        for cm in self.mappings.values():
            if cm.source == source:
                out.extend(cm.map(item, ctx))
        return out

    def writable_values(self, record: Record) -> dict[str, Any]:
        """Values of ``record`` a Dataverse client may send (read-only columns dropped)."""
        table = self.tables[record.table]
        return {k: v for k, v in record.values.items() if k in table.writable_columns}


def _collect(sources: Iterable[tuple[str, str]], problems: list[Problem]) -> list[tuple[Document, m.Mapping | m.MappingOverlay]]:
    out = []
    for name, text in sources:
        doc, errs = parse_document(name, text)
        problems.extend(errs)
        if doc is None or errs:
            continue
        model, errs = validate_document(doc)
        problems.extend(errs)
        if model is not None:
            out.append((doc, model))
    return out


def build_mapping_set(
    shipped: Iterable[tuple[str, str]],
    overlays: Iterable[tuple[str, str]] = (),
    *,
    tables: AbcMapping[str, TableInfo] | None = None,
) -> MappingSet:
    """Validate, merge and compile mapping sources given as ``(file name, YAML text)`` pairs.

    Raises:
        MappingValidationError: with every problem found, each located in its file.
    """
    problems: list[Problem] = []
    entries: dict[str, _Entry] = {}
    for doc, model in _collect(shipped, problems):
        if isinstance(model, m.MappingOverlay):
            problems.append(_problem(doc, ("kind",), "shipped mappings must be kind: Mapping"))
        elif model.name in entries:
            problems.append(_problem(doc, ("name",), f"duplicate mapping name {model.name!r}"))
        else:
            entries[model.name] = _Entry(model, doc)
    for doc, model in _collect(overlays, problems):
        if isinstance(model, m.Mapping):
            entries[model.name] = _Entry(model, doc)  # a full user mapping replaces or adds
        elif model.name not in entries:
            problems.append(_problem(doc, ("name",), f"overlay for unknown mapping {model.name!r}", "known mappings: " + ", ".join(sorted(entries))))
        else:
            _merge(entries[model.name], model, doc)

    all_tables: dict[str, TableInfo] = dict(tables if tables is not None else load_tables())
    checked: list[tuple[_Entry, TableInfo]] = []
    for entry in entries.values():
        issues, table = check_mapping(entry.mapping, all_tables)
        for issue in issues:
            problems.append(_problem(entry.doc_for(issue.loc), issue.loc, issue.message, issue.hint))
        if table is not None and not issues:
            checked.append((entry, table))
            all_tables[table.name] = table  # custom tables/columns become visible to the store
    if problems:
        raise MappingValidationError(problems)
    compiled = {e.mapping.name: compile_mapping(e.mapping, t, all_tables) for e, t in checked}
    return MappingSet(compiled, all_tables)


def load_mapping_set(mappings_dir: str | Path | None = None) -> MappingSet:
    """Shipped mappings, overlaid with the user's ``mappings_dir`` (if given), compiled."""
    overlays = _iter_yaml(Path(mappings_dir)) if mappings_dir is not None else []
    return build_mapping_set(_iter_yaml(shipped_mappings_dir()), overlays)


def validate_dir(path: str | Path | None = None) -> list[str]:
    """``file:line:col: problem (hint)`` strings for a mapping directory (empty list = valid).

    ``path`` is validated as an overlay directory on top of the shipped mappings; with no
    path the shipped mappings themselves are validated.
    """
    if path is not None and not Path(path).is_dir():
        return [f"{path}:1:1: not a directory (give a directory of *.yaml mapping files)"]
    try:
        if path is not None and Path(path).resolve() == Path(str(shipped_mappings_dir())).resolve():
            path = None
        load_mapping_set(path)
    except MappingValidationError as exc:
        return [str(p) for p in exc.problems]
    return []
