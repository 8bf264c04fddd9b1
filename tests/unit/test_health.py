"""The health verdict a balancer acts on (shim/health.py): pure, from the daemon's status."""

from __future__ import annotations

import pytest

from shim.health import (
    Health,
    HealthState,
    agent_reply,
    free_lanes_percent,
    health_body,
    health_state,
)
from whisperd.core.errors import NotReady
from whisperd.core.replies import DaemonState, DaemonStatus

MIB = 1 << 20


def ready(**load) -> DaemonStatus:
    """A ready daemon with the default limits: 2 hot slots, 2 cold workers, queue 64, 256 MiB."""
    limits = dict(hot_slots=2, max_cold_workers=2, queue_size=64, decoded_audio_budget=256 * MIB,
                  request_reserve=3_840_000)
    return DaemonStatus(**{"status": DaemonState.READY, **limits, **load})


def test_an_idle_ready_daemon_is_ok_with_every_lane_free():
    verdict = health_state(ready(), draining=False)
    assert verdict == Health(HealthState.OK, "ready", weight=100)
    assert (verdict.http_status, verdict.code) == (200, None)
    assert agent_reply(verdict) == "up ready 100%\n"


@pytest.mark.parametrize("running, active, weight", [(1, 1, 75), (2, 2, 50), (3, 1, 25), (1, 4, 1), (0, 9, 1)])
def test_the_weight_is_the_share_of_free_lanes_and_never_zero_while_ok(running, active, weight):
    verdict = health_state(ready(running=running, active=active), draining=False)
    assert verdict.ok and verdict.weight == weight  # 0 % would read as DRAIN to HAProxy
    assert agent_reply(verdict) == f"up ready {weight}%\n"


def test_free_lanes_count_waiting_requests_as_busy():
    assert free_lanes_percent(ready(running=0, active=0)) == 100
    assert free_lanes_percent(ready(running=2, active=6)) == 0


def test_an_unreachable_daemon_is_unavailable_and_the_agent_says_down():
    verdict = health_state(NotReady("whisperd is not running (no daemon on /tmp/x: No such file)"), draining=False)
    assert verdict.state is HealthState.UNAVAILABLE
    assert (verdict.http_status, verdict.code) == (503, "not_ready")
    line = agent_reply(verdict)
    assert line.startswith("down#whisperd is not running") and line.endswith("\n") and line.count("\n") == 1


def test_the_agent_line_stays_one_line_whatever_the_reason():
    line = agent_reply(health_state(NotReady("two\nlines\r\nhere " + "x" * 500), draining=False))
    assert line.count("\n") == 1 and "\r" not in line and len(line) < 140


def test_a_draining_shim_drains_even_with_a_ready_daemon():
    verdict = health_state(ready(), draining=True)
    assert verdict.state is HealthState.DRAINING and verdict.code == "shutting_down"
    assert agent_reply(verdict) == "drain\n"


def test_a_draining_shim_drains_even_with_its_daemon_gone():
    assert health_state(NotReady("gone"), draining=True).state is HealthState.DRAINING


def test_a_draining_daemon_is_draining():
    verdict = health_state(ready(status=DaemonState.DRAINING), draining=False)
    assert verdict.state is HealthState.DRAINING and verdict.http_status == 503


def test_a_daemon_in_a_state_this_shim_does_not_know_is_not_ready():
    status = ready(status="warming")
    verdict = health_state(status, draining=False)
    assert verdict.state is HealthState.NOT_READY and verdict.code == "not_ready"
    assert health_body(verdict, status)["status"] == "warming"  # its own word passes through


def test_a_full_queue_is_saturated():
    verdict = health_state(ready(active=64, running=4), draining=False)
    assert verdict.state is HealthState.SATURATED and verdict.code == "overloaded"
    assert "64 requests" in verdict.reason
    assert agent_reply(verdict) == "drain\n"
    assert health_state(ready(active=63, running=4), draining=False).ok


def test_a_full_decoded_audio_budget_is_saturated():
    room_for_one = 256 * MIB - 3_840_000
    assert health_state(ready(decoded_audio_reserved=room_for_one), draining=False).ok
    verdict = health_state(ready(decoded_audio_reserved=room_for_one + 1), draining=False)
    assert verdict.state is HealthState.SATURATED and "decoded-audio budget" in verdict.reason


def test_an_older_daemon_without_limits_is_judged_by_readiness_alone():
    older = DaemonStatus.from_dict({"status": "ready", "queue": 500, "running": 3})
    verdict = health_state(older, draining=False)
    assert verdict.ok and 1 <= verdict.weight <= 100


def test_the_body_is_the_status_plus_openais_error_on_a_503():
    status = ready(active=64)
    body = health_body(health_state(status, draining=False), status)
    assert body["status"] == "saturated" and body["queue_size"] == 64
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["code"], body["error"]["type"]) == ("overloaded", "server_error")
    ok = health_body(health_state(ready(), draining=False), ready())
    assert ok["status"] == "ok" and "error" not in ok
    gone = health_body(health_state(NotReady("whisperd is not running"), draining=False), NotReady("x"))
    assert gone == {"status": "unavailable", "error": {"message": "whisperd is not running", "type": "server_error",
                                                       "param": None, "code": "not_ready"}}
