"""The shim's upload budget: pure accounting (the HTTP behaviour is in reliability/test_faults.py)."""

import pytest

from shim.budget import UploadBudget
from shim.errors import HTTPError


def test_cover_holds_every_byte_received_once():
    budget = UploadBudget(1000)
    with budget.lease() as lease:
        lease.cover(300)
        lease.cover(300)  # nothing new arrived
        lease.cover(700)
        assert (lease.held, budget.held) == (700, 700)
    assert budget.held == 0


def test_a_lease_past_the_limit_is_refused_and_holds_nothing_more():
    budget = UploadBudget(1000)
    first = budget.lease()
    first.cover(800)
    with budget.lease() as second:
        second.cover(150)
        with pytest.raises(HTTPError) as refused:
            second.cover(250)
        assert refused.value.code == "overloaded" and "max_buffered_bytes" in str(refused.value)
        assert budget.held == 950
    first.release()
    assert budget.held == 0
