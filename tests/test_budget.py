"""app/budget.py: one budget for the bytes every request holds, an allowance each, all given back at the end."""

from __future__ import annotations

import pytest

from app.budget import MemoryBudget


def test_a_request_within_its_allowance_takes_nothing_from_the_budget() -> None:
    budget = MemoryBudget(0, allowance=100)
    with budget.hold() as hold:
        assert hold.take(60) and hold.take(40)
        assert budget.used == 0
        assert not hold.take(1)  # past the allowance, and the budget is empty
        assert hold.held == 100


def test_requests_share_the_budget_and_give_it_back() -> None:
    budget = MemoryBudget(1000, allowance=100)
    with budget.hold() as first, budget.hold() as second:
        assert first.take(700)  # 600 from the budget
        assert budget.used == 600
        assert not second.take(600)  # would need 500 more than the 400 left: nothing counted
        assert (second.held, budget.used) == (0, 600)
        assert second.take(500)  # 400 from the budget
        assert budget.used == 1000
        first.give_back(300)  # dropped files
        assert (first.held, budget.used) == (400, 700)
        first.give_back(350)  # back within its allowance
        assert (first.held, budget.used) == (50, 400)
    assert budget.used == 0


def test_the_budget_is_given_back_when_the_request_fails() -> None:
    budget = MemoryBudget(1000, allowance=0)

    def failing_request() -> None:
        with budget.hold() as hold:
            assert hold.take(800)
            raise RuntimeError("the handler broke")

    with pytest.raises(RuntimeError):
        failing_request()
    assert budget.used == 0
    with budget.hold() as hold:
        assert hold.take(1000)


def test_a_body_of_unknown_length_gets_its_allowance_only() -> None:
    budget = MemoryBudget(1000, allowance=100)
    with budget.hold() as hold:
        hold.shared = False
        assert hold.take(100)
        assert not hold.take(1)
        assert budget.used == 0


def test_one_source_holds_at_most_two_uploads_at_once() -> None:
    budget = MemoryBudget(10_000, allowance=100)
    with budget.hold("one") as first, budget.hold("one") as second:
        assert first.take(500) and second.take(500)
        with budget.hold("one") as third, budget.hold("other") as other, budget.hold(None) as unknown:
            assert third.take(100)  # its own allowance: a text tip is never refused
            assert not third.take(1)  # a third upload from the same source
            assert other.take(500) and unknown.take(500)
        assert budget.uploads == {"one": 2}
    with budget.hold("one") as again:
        assert again.take(500)  # the first two are over
    assert budget.uploads == {} and budget.used == 0
