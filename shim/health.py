"""Can this host take work now? The one answer `/health` and the agent-check port both give.

A load balancer acts on a yes or no, so `/health` is 200 only when a new request would
be taken at once, and 503 (with `Retry-After`) when it would not:

    state        when                                                  HTTP  code            agent-check
    ok           the daemon is ready and has room                       200   -               up ready N%
    unavailable  no daemon on the socket, or it did not answer in time  503   not_ready       down#...
                 (still loading its model: socket activation queues
                 the status request until the model is in)
    not_ready    the daemon answers but is not ready (a newer state)    503   not_ready       down#...
    draining     this shim got SIGTERM, or the daemon is draining       503   shutting_down   drain
    saturated    active requests at queue_size, or the decoded-audio    503   overloaded      drain
                 budget has no room for one more request

N, the weight, is the share of lanes (hot slots + cold workers the daemon may start) that
are free, at least 1 % while the host is ok: HAProxy reads 0 % as DRAIN.

`health_state` and `agent_reply` are pure: they take the daemon's status (or the error
met asking for it) and the shim's own draining flag, nothing else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shim.errors import HTTPError, error_dict
from whisperd.client import AsyncClient
from whisperd.core.errors import NotReady, WhisperdError
from whisperd.core.replies import DaemonStatus

# A ready daemon answers `status` in milliseconds, load or not (decoding runs off its loop);
# one that does not answer within this is loading its model or stuck: not a host to send to.
STATUS_TIMEOUT = 3.0


class HealthState(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    NOT_READY = "not_ready"
    DRAINING = "draining"
    SATURATED = "saturated"


CODE_BY_STATE = {
    HealthState.UNAVAILABLE: "not_ready",
    HealthState.NOT_READY: "not_ready",
    HealthState.DRAINING: "shutting_down",
    HealthState.SATURATED: "overloaded",
}


@dataclass(frozen=True)
class Health:
    state: HealthState
    reason: str  # a sentence for people: the 503's message, the agent's `down#` text
    weight: int = 100  # percent of lanes free (meaningful when ok)

    @property
    def ok(self) -> bool:
        return self.state is HealthState.OK

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    @property
    def code(self) -> str | None:
        return CODE_BY_STATE.get(self.state)


def _saturation(status: DaemonStatus) -> str | None:
    """Why a ready daemon would refuse one more request now, or None when it has room."""
    if status.queue_size and status.active >= status.queue_size:
        return f"whisperd has {status.active} requests under way, its queue_size"
    if status.decoded_audio_budget:
        room = status.decoded_audio_budget - status.decoded_audio_reserved
        if room < max(1, status.request_reserve):
            return (f"whisperd's decoded-audio budget ({status.decoded_audio_budget >> 20} MiB) is taken "
                    "by the requests under way")
    return None


def free_lanes_percent(status: DaemonStatus) -> int:
    """The share of the daemon's lanes free now: hot slots plus the cold workers it may start."""
    lanes = max(1, status.hot_slots + status.max_cold_workers)
    busy = max(status.running, status.active)
    return max(0, min(100, round(100 * (lanes - busy) / lanes)))


def health_state(status: DaemonStatus | WhisperdError, draining: bool) -> Health:
    """The verdict from the daemon's status (or the error asking for it) and the shim's drain."""
    if draining:
        # First: a stopping shim must leave rotation even while its daemon is fine.
        return Health(HealthState.DRAINING, "whisperd-shim is shutting down (SIGTERM): finishing what it has")
    if isinstance(status, WhisperdError):
        return Health(HealthState.UNAVAILABLE, status.message)
    if status.draining:
        return Health(HealthState.DRAINING, "whisperd is draining: finishing what it has before it stops")
    if not status.ready:
        return Health(HealthState.NOT_READY, f"whisperd is {status.status}")
    full = _saturation(status)
    if full is not None:
        return Health(HealthState.SATURATED, f"{full}; try again shortly")
    return Health(HealthState.OK, "ready", weight=max(1, free_lanes_percent(status)))


def agent_reply(health: Health) -> str:
    """HAProxy's agent-check line: `ready` undoes an earlier `drain`, `up` an earlier `down`."""
    if health.ok:
        return f"up ready {health.weight}%\n"
    if health.state in (HealthState.DRAINING, HealthState.SATURATED):
        return "drain\n"  # finish what it has, take nothing new; a later `ready` brings it back
    # '#' starts the description HAProxy shows; the line must stay one line.
    reason = " ".join(health.reason.split())[:120]
    return f"down#{reason}\n"


def health_body(health: Health, status: DaemonStatus | WhisperdError) -> dict[str, Any]:
    """GET /health's JSON: the daemon's status with the verdict's word, plus OpenAI's error on a 503."""
    body = status.to_dict() if isinstance(status, DaemonStatus) else {}
    word = status.status if health.state is HealthState.NOT_READY and isinstance(status, DaemonStatus) \
        else str(health.state)
    body["status"] = word
    if not health.ok:
        body.update(error_dict(HTTPError(health.code or "not_ready", health.reason)))
    return body


async def read_status(client: AsyncClient, timeout: float | None = None) -> DaemonStatus | WhisperdError:
    """The daemon's status, or the error that says why there is none (never raises for "down")."""
    timeout = STATUS_TIMEOUT if timeout is None else timeout
    try:
        return await asyncio.wait_for(client.status(), timeout)
    except WhisperdError as err:
        return err
    except asyncio.TimeoutError:
        return NotReady(f"whisperd did not answer within {timeout:g} s (still loading its model, or stuck)")
