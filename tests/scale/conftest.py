"""The scale level (`make test-scale`): the real HAProxy in front of three real hosts.

It needs Debian's `haproxy` (and `nginx` for the nginx config's check). Missing, the tests
fail - never skip: a scale run that proved nothing must not read as a pass.
"""

from __future__ import annotations

import pytest

from testing.balancer import haproxy_program
from testing.cluster import Cluster


@pytest.fixture(scope="module")
def cluster():
    haproxy_program()  # raises HAProxyMissing, which fails every test that needs the cluster
    c = Cluster(3)
    yield c
    c.stop()
