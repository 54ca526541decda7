"""Fuzzing the http1 path of a real server (see tests/fuzz/targets.py)."""

from __future__ import annotations

import pytest

from tests.fuzz.suite import mutation_test, server_fixture, split_test
from tests.fuzz.targets import TARGETS

TARGET = TARGETS["http1"]
fuzz = pytest.fixture(scope="module")(server_fixture)
test_mutated_input_never_breaks_the_server = mutation_test(TARGET)
test_valid_input_split_at_every_boundary_is_answered = split_test(TARGET)
