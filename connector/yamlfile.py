"""YAML loading that remembers where every value came from, for `file:line:col` error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[int | str, ...]


_SCALARS = yaml.constructor.SafeConstructor()  # builds one scalar node the way yaml.safe_load would


class YamlFileError(ValueError):
    """A YAML file that cannot be parsed or does not validate; `str()` lists `file:line:col: problem`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _walk(node: yaml.Node, loc: Loc, marks: dict[Loc, tuple[int, int]]) -> Any:
    marks.setdefault(loc, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else _SCALARS.construct_object(k, deep=True)
            marks[(*loc, key)] = (k.start_mark.line + 1, k.start_mark.column + 1)
            out[key] = _walk(v, (*loc, key), marks)
            marks.setdefault((*loc, key, "__value__"), (v.start_mark.line + 1, v.start_mark.column + 1))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, (*loc, i), marks) for i, v in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


def load_with_marks(path: Path) -> tuple[Any, dict[Loc, tuple[int, int]]]:
    """Parse `path` safely; returns the data and a map from each value's path to (line, column)."""
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise YamlFileError([f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    marks: dict[Loc, tuple[int, int]] = {}
    if node is None:
        return {}, marks
    return _walk(node, (), marks), marks


def locate(marks: dict[Loc, tuple[int, int]], loc: Loc) -> tuple[int, int]:
    """The closest recorded position for `loc` (falls back to its nearest parent)."""
    loc = tuple(loc)
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return marks.get((), (1, 1))


def validation_problems(path: Path, exc: ValidationError, marks: dict[Loc, tuple[int, int]]) -> list[str]:
    """`file:line:col: field: problem` lines for a pydantic error, pointing into the YAML source."""
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        line, col = locate(marks, loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        out.append(f"{path}:{line}:{col}: {field}: {err['msg']}")
    return out


def load_model(path: Path, model: type[BaseModel]) -> tuple[BaseModel, dict[Loc, tuple[int, int]]]:
    """Load and validate `path` as `model`, raising `YamlFileError` with source positions."""
    data, marks = load_with_marks(path)
    try:
        return model.model_validate(data), marks
    except ValidationError as exc:
        raise YamlFileError(validation_problems(path, exc, marks)) from None
