"""The daemon's replies as small typed values: a transcription, its status, its models.

The daemon builds them, the client returns them, and the shim and whisperctl read
them - nobody digs in dict keys (wyoming's `Transcript.event()` / `from_event()`
is the model). On the wire they are protocol v1's JSON, unchanged: `to_dict()`
gives exactly the keys the daemon has always sent, and `from_dict()` ignores keys
it does not know and takes a default for an optional one that is missing, so a
newer or an older daemon still reads. Stdlib only: every program imports it.

    result frame of a transcription   {"v", "type", **TranscribeResult.to_dict()}
    result of `status`                {"v", "type", "id", "result": DaemonStatus.to_dict()}
    result of `models`                {"v", "type", "id", "result": model_list_dict(models)}
    result of `rescan`                {"v", "type", "id", "result": RescanResult.to_dict()}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Iterable, Mapping

from whisperd.core.transcript import Transcript


class DaemonState(StrEnum):
    """What the daemon says it is doing (`DaemonStatus.status`)."""

    READY = "ready"
    DRAINING = "draining"  # finishing in-flight work before it stops; takes no new work


def _int(value: Any, default: int = 0) -> int:
    return default if value is None or isinstance(value, bool) else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _value(state: Any) -> str:
    # A lane's state may be an enum on the daemon's side; the wire carries its value.
    return str(getattr(state, "value", state))


@dataclass(frozen=True)
class TranscribeResult:
    """The final reply to a transcription: the transcript, and who made it how fast."""

    transcript: Transcript
    id: str = ""  # the request's id
    worker: str | None = None  # "hot", or the cold worker's id ("cold-3")
    model: str | None = None  # the model that served it (after alias resolution)
    processing_seconds: float | None = None  # the daemon's time, decode to answer

    @property
    def text(self) -> str:
        return self.transcript.text

    def to_dict(self) -> dict[str, Any]:
        """The result frame's fields, without its envelope (`v`, `type`)."""
        return {
            "id": self.id,
            "result": self.transcript.to_dict(),
            "worker": self.worker,
            "model": self.model,
            "processing_seconds": self.processing_seconds,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "TranscribeResult":
        return TranscribeResult(
            transcript=Transcript.from_dict(d["result"]),
            id=str(d.get("id") or ""),
            worker=_str_or_none(d.get("worker")),
            model=_str_or_none(d.get("model")),
            processing_seconds=_float_or_none(d.get("processing_seconds")),
        )


@dataclass(frozen=True)
class LaneStatus:
    """One lane of the pool: a slot of the hot worker, or a cold worker process."""

    id: str
    kind: str  # "hot" | "cold" (for people and dashboards; no code branches on it)
    model: str
    state: str  # the lane's state, e.g. "idle", "busy", "loading"
    served: int = 0
    pid: int | None = None  # a worker process's pid, where the lane has its own
    threads: int | None = None  # its CPU threads, where the lane has its own

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "model": self.model, "state": self.state,
                             "served": self.served}
        if self.pid is not None:
            d["pid"] = self.pid
        if self.threads is not None:
            d["threads"] = self.threads
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "LaneStatus":
        return LaneStatus(
            id=str(d.get("id", "?")),
            kind=str(d.get("kind", "?")),
            model=str(d.get("model", "?")),
            state=_value(d.get("state", "?")),
            served=_int(d.get("served")),
            pid=None if d.get("pid") is None else _int(d["pid"]),
            threads=None if d.get("threads") is None else _int(d["threads"]),
        )


@dataclass(frozen=True)
class DaemonStatus:
    """The answer to `status`: the daemon's state, its model and engine, its load."""

    status: str = DaemonState.READY  # a DaemonState value; a newer daemon's own passes through
    version: str = ""
    model: str = ""  # the default (hot) model
    engine: str = ""
    device: str = ""
    compute_type: str = ""
    queue: int = 0  # work waiting: requests being decoded or queued, and queued windows of long ones
    running: int = 0  # jobs (whole requests or windows) on a lane now
    windowed: int = 0  # long requests under way as chains of windows
    decoded_audio_reserved: int = 0  # bytes of the decoded-audio budget the requests under way hold
    # The limits behind "can take work now" (a balancer's health check). 0: not reported (an
    # older daemon), and then the shim judges by what it has.
    active: int = 0  # requests submitted and not yet answered (what queue_size bounds)
    queue_size: int = 0  # the daemon refuses a request past this many active ones
    decoded_audio_budget: int = 0  # bytes of decoded audio that work under way may hold
    request_reserve: int = 0  # bytes one new request may reserve of that budget
    max_cold_workers: int = 0  # cold lanes the daemon may add to its hot slots
    workers: Mapping[str, int] = field(default_factory=dict)  # worker kind → how many
    hot_slots: int = 1
    loading: int = 0  # cold workers still loading their model
    lanes: tuple[LaneStatus, ...] = ()
    spawns: int = 0  # cold workers started since the daemon started
    crashes: int = 0  # cold workers that died unexpectedly or failed to start
    spawn_to_ready_s: float | None = None  # a cold worker's typical start, once one started
    # Whatever event counters the pool keeps (retries, dropped requests, fallbacks...), by name.
    counters: Mapping[str, int] = field(default_factory=dict)
    served: int = 0  # transcriptions answered
    uptime: float = 0.0  # seconds
    # Live sessions: `sessions` open, `max_sessions`, counts (`live_sessions`, `live_utterances`,
    # `live_partials`, `live_refused`, `live_timeouts`, `finals`) and end-of-speech-to-final times.
    live: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == DaemonState.READY

    @property
    def draining(self) -> bool:
        return self.status == DaemonState.DRAINING

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "version": self.version,
            "model": self.model,
            "engine": self.engine,
            "device": self.device,
            "compute_type": self.compute_type,
            "queue": self.queue,
            "running": self.running,
            "windowed": self.windowed,
            "decoded_audio_reserved": self.decoded_audio_reserved,
            "active": self.active,
            "queue_size": self.queue_size,
            "decoded_audio_budget": self.decoded_audio_budget,
            "request_reserve": self.request_reserve,
            "max_cold_workers": self.max_cold_workers,
            "workers": dict(self.workers),
            "hot_slots": self.hot_slots,
            "loading": self.loading,
            "lanes": [lane.to_dict() for lane in self.lanes],
            "spawns": self.spawns,
            "crashes": self.crashes,
            "spawn_to_ready_s": self.spawn_to_ready_s,
            "counters": dict(self.counters),
            "served": self.served,
            "uptime": self.uptime,
            "live": dict(self.live),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "DaemonStatus":
        return DaemonStatus(
            status=_value(d.get("status", "")),
            version=str(d.get("version") or ""),
            model=str(d.get("model") or ""),
            engine=str(d.get("engine") or ""),
            device=str(d.get("device") or ""),
            compute_type=str(d.get("compute_type") or ""),
            queue=_int(d.get("queue")),
            running=_int(d.get("running")),
            windowed=_int(d.get("windowed")),
            decoded_audio_reserved=_int(d.get("decoded_audio_reserved")),
            active=_int(d.get("active")),
            queue_size=_int(d.get("queue_size")),
            decoded_audio_budget=_int(d.get("decoded_audio_budget")),
            request_reserve=_int(d.get("request_reserve")),
            max_cold_workers=_int(d.get("max_cold_workers")),
            workers={str(k): _int(v) for k, v in (d.get("workers") or {}).items()},
            hot_slots=_int(d.get("hot_slots"), 1),
            loading=_int(d.get("loading")),
            lanes=tuple(LaneStatus.from_dict(lane) for lane in d.get("lanes") or () if isinstance(lane, Mapping)),
            spawns=_int(d.get("spawns")),
            crashes=_int(d.get("crashes")),
            spawn_to_ready_s=_float_or_none(d.get("spawn_to_ready_s")),
            counters={str(k): _int(v) for k, v in (d.get("counters") or {}).items()},
            served=_int(d.get("served")),
            uptime=float(d.get("uptime") or 0.0),
            live={str(k): v for k, v in (d.get("live") or {}).items()
                  if isinstance(v, (int, float)) or v is None},
        )


@dataclass(frozen=True)
class ModelEntry:
    """A model the daemon serves."""

    id: str
    loaded: bool = False  # some lane holds it now
    multilingual: bool = False
    default: bool = False  # the hot worker's model, which the default aliases name
    source: str = ""  # models_dir, hf_cache, bundled or path ("": a daemon that does not say)
    size_bytes: int | None = None  # the model's files on disk

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "loaded": self.loaded, "multilingual": self.multilingual,
                             "default": self.default}
        if self.source:
            d["source"] = self.source
        if self.size_bytes is not None:
            d["size_bytes"] = self.size_bytes
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "ModelEntry":
        size = d.get("size_bytes")
        return ModelEntry(id=str(d["id"]), loaded=bool(d.get("loaded")), multilingual=bool(d.get("multilingual")),
                          default=bool(d.get("default")), source=str(d.get("source") or ""),
                          size_bytes=size if isinstance(size, int) and not isinstance(size, bool) else None)


def model_list_dict(models: Iterable[ModelEntry]) -> dict[str, Any]:
    """The `result` of a `models` request."""
    return {"models": [m.to_dict() for m in models]}


def model_list_from_dict(d: Mapping[str, Any]) -> list[ModelEntry]:
    return [ModelEntry.from_dict(m) for m in d.get("models") or () if isinstance(m, Mapping) and "id" in m]


@dataclass(frozen=True)
class RescanResult:
    """What the daemon serves after reading its models folder (and hub cache) again."""

    models: tuple[ModelEntry, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    models_dir: str = ""  # where the daemon looks: a pull into another folder is not seen

    def to_dict(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed), "models_dir": self.models_dir,
                **model_list_dict(self.models)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "RescanResult":
        return RescanResult(models=tuple(model_list_from_dict(d)), added=tuple(map(str, d.get("added") or ())),
                            removed=tuple(map(str, d.get("removed") or ())), models_dir=str(d.get("models_dir") or ""))
