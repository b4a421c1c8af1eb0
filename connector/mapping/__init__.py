"""Declarative Graph -> Dataverse mappings: YAML files validated, compiled to closures, explainable."""

from __future__ import annotations

from connector.mapping.compiler import CompiledMapping, writable_values
from connector.mapping.errors import MappingError, MappingValidationError, Problem, RecordInvalid
from connector.mapping.explain import explain
from connector.mapping.loader import MappingSet, build_mapping_set, load_mapping_set, validate_dir
from connector.mapping.models import json_schema
from connector.mapping.records import MappingContext, PartyRef, Record
from connector.mapping.resources import shipped_mappings_dir

__all__ = [
    "CompiledMapping",
    "MappingContext",
    "MappingError",
    "MappingSet",
    "MappingValidationError",
    "PartyRef",
    "Problem",
    "Record",
    "RecordInvalid",
    "build_mapping_set",
    "explain",
    "json_schema",
    "load_mapping_set",
    "shipped_mappings_dir",
    "validate_dir",
    "writable_values",
]
