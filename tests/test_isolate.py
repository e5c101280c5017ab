"""run_isolating: a failing batch is halved until the culprit is alone; outages are re-raised."""
from __future__ import annotations

import pytest

from modelbus.handlers.follow.isolate import run_isolating


class Outage(Exception):
    pass


def test_the_culprit_alone_is_set_aside_and_the_rest_runs_in_order():
    calls = []

    def run(batch):
        calls.append(list(batch))
        if 13 in batch:
            raise ValueError("13 is bad")
        return [f"ok {i}" for i in batch]

    result = run_isolating(list(range(20)), run, lambda item, exc: [f"dead {item}: {exc}"], lambda exc: False)
    assert result == [f"ok {i}" for i in range(13)] + ["dead 13: 13 is bad"] + [f"ok {i}" for i in range(14, 20)]
    # Halving: far fewer runs than one per item.
    assert len(calls) < 12


def test_an_outage_is_raised_not_blamed_on_an_item():
    def run(batch):
        raise Outage("database down")

    with pytest.raises(Outage):
        run_isolating([1, 2, 3], run, lambda item, exc: ["dead"], lambda exc: isinstance(exc, Outage))


def test_several_culprits():
    def run(batch):
        if any(i % 5 == 0 for i in batch):
            raise ValueError("multiple of 5")
        return list(batch)

    result = run_isolating(list(range(1, 17)), run, lambda item, exc: [-item], lambda exc: False)
    assert result == [i if i % 5 else -i for i in range(1, 17)]
