"""YAML loading with source positions: values load as yaml.safe_load would, errors point at the line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from connector.yamlfile import YamlFileError, load_with_marks, locate


def test_values_match_safe_load_including_empty_ones(tmp_path: Path) -> None:
    text = 'a:\nb: {x: 1, y: }\nc: [1, 2.5, true, null, ~, "s", 0x10]\nd: 2026-01-01\ne: "2026-01-01"\n'
    path = tmp_path / "v.yaml"
    path.write_text(text)
    data, marks = load_with_marks(path)
    assert data == yaml.safe_load(text)
    assert data["d"] == dt.date(2026, 1, 1) and data["b"]["y"] is None
    assert locate(marks, ("c", 2)) == (3, 13) and locate(marks, ("b",)) == (2, 1)


def test_syntax_errors_name_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\nb: c: d\n")
    with pytest.raises(YamlFileError) as err:
        load_with_marks(path)
    assert str(err.value).startswith(f"{path}:2:5: invalid YAML")
