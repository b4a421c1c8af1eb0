"""Fixtures for mapping and store tests: the shipped mappings and a mailbox context."""

from __future__ import annotations

import pytest
from mapping_helpers import MAILBOX

from connector.mapping import MappingContext, MappingSet, load_mapping_set


@pytest.fixture(scope="session")
def mapping_set() -> MappingSet:
    """The shipped mappings, compiled once."""
    return load_mapping_set()


@pytest.fixture()
def ctx() -> MappingContext:
    """Context of Alex's mailbox, inbox folder."""
    return MappingContext(mailbox=MAILBOX, folder="inbox")
