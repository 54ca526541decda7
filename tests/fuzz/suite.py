"""The tests every fuzz module runs, bound to its target: a module is `TARGET = ...` plus these."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz.harness import FuzzServer, fuzz_server
from tests.fuzz.targets import Target

SUITE_EXAMPLES = 200  # per target: a few seconds each on a loaded 2-core box


SUITE_SETTINGS = settings(
    max_examples=SUITE_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the work tree; a failure prints its exact input
    # Shrinking through 3-second socket timeouts can outlast the test's timeout: the suite
    # reports the input as found; `python -m tests.fuzz` shrinks.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def server_fixture() -> Iterator[FuzzServer]:
    with fuzz_server() as server:
        yield server


def mutation_test(target: Target) -> Callable[..., None]:
    """Fuzzed exchanges, each followed by the checks (probe, error log, RSS)."""

    @pytest.mark.timeout(120)
    @SUITE_SETTINGS
    @given(example=target.strategy)
    def test_mutated_input_never_breaks_the_server(fuzz: FuzzServer, example: dict) -> None:
        target.exchange(fuzz.port, example)
        fuzz.check(target.probe)

    return test_mutated_input_never_breaks_the_server


def split_test(target: Target) -> Callable[..., None]:
    """Each valid seed written in two pieces, cut at every byte boundary, gets its normal answer."""

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("seed", target.split_seeds, ids=lambda seed: f"{len(seed)}B")
    def test_valid_input_split_at_every_boundary_is_answered(fuzz: FuzzServer, seed: bytes) -> None:
        for cut in range(1, len(seed)):
            target.split(fuzz.port, seed, cut)
        fuzz.check(target.probe)

    return test_valid_input_split_at_every_boundary_is_answered
