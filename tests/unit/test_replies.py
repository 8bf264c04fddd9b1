"""The typed replies: round trips, the exact v1 keys, and tolerance of newer and older daemons."""

from __future__ import annotations

import json

from whisperd.core import protocol
from whisperd.core.replies import (
    DaemonState,
    DaemonStatus,
    LaneStatus,
    ModelEntry,
    TranscribeResult,
    model_list_dict,
    model_list_from_dict,
)
from whisperd.core.transcript import Segment, Transcript, Word

TRANSCRIPT = Transcript(
    "Hello there.", "en", 2.5,
    (Segment(0, 0, 0.0, 2.5, " Hello there.", (50364, 2425), 0.0, -0.2, 1.1, 0.01,
             (Word(" Hello", 0.0, 1.0, 0.9), Word(" there.", 1.0, 2.5, 0.8))),),
)

# What the daemon sent for `status` before the replies were typed, key for key.
V1_STATUS = {
    "status": "ready", "version": "0.1.0", "model": "tiny.en", "engine": "faster-whisper", "device": "cpu",
    "compute_type": "int8", "queue": 0, "running": 1, "workers": {"hot": 1, "cold": 1}, "hot_slots": 2,
    "loading": 0,
    "lanes": [{"id": "hot", "kind": "hot", "model": "tiny.en", "state": "busy", "served": 3},
              {"id": "hot-2", "kind": "hot", "model": "tiny.en", "state": "idle", "served": 1},
              {"id": "cold-1", "kind": "cold", "model": "base", "state": "idle", "served": 2, "pid": 4242,
               "threads": 2}],
    "spawns": 1, "crashes": 0, "spawn_to_ready_s": 1.234, "served": 6, "uptime": 12.5,
}


def wire(frame: bytes) -> dict:
    return protocol.parse_reply(frame[4:])


def test_transcribe_result_frame_keeps_the_v1_bytes():
    reply = TranscribeResult(TRANSCRIPT, id="r1", worker="hot", model="tiny.en", processing_seconds=0.0123)
    old = protocol.result_frame("r1", TRANSCRIPT.to_dict(), worker="hot", model="tiny.en",
                                processing_seconds=0.0123)
    assert protocol.reply_frame("result", reply.to_dict()) == old


def test_transcribe_result_round_trip_through_the_wire():
    reply = TranscribeResult(TRANSCRIPT, id="r1", worker="cold-2", model="base", processing_seconds=1.5)
    back = TranscribeResult.from_dict(wire(protocol.reply_frame("result", reply.to_dict())))
    assert back == reply
    assert back.text == "Hello there." and [w.word for w in back.transcript.words] == [" Hello", " there."]


def test_transcribe_result_tolerates_a_newer_and_an_older_daemon():
    frame = {"v": 1, "type": "result", "id": "r1",
             "result": {**TRANSCRIPT.to_dict(), "speaker": "A",
                        "segments": [{**TRANSCRIPT.to_dict()["segments"][0], "speaker": "A",
                                      "words": [{"word": " Hello", "start": 0.0, "end": 1.0, "extra": 1}]}]},
             "worker": "hot", "queue_seconds": 0.1}
    newer = TranscribeResult.from_dict(frame)
    assert newer.transcript.segments[0].words == (Word(" Hello", 0.0, 1.0, 0.0),)
    assert (newer.worker, newer.model, newer.processing_seconds) == ("hot", None, None)
    older = TranscribeResult.from_dict({"result": {"text": "x", "language": "en", "duration": 1}})
    assert older.transcript == Transcript("x", "en", 1.0) and older.id == "" and older.worker is None


def test_status_keeps_the_v1_keys_and_values():
    status = DaemonStatus.from_dict(V1_STATUS)
    new_keys = {"counters": {}, "windowed": 0, "decoded_audio_reserved": 0, "active": 0, "queue_size": 0,
                "decoded_audio_budget": 0, "request_reserve": 0, "max_cold_workers": 0, "live": {}}
    assert status.to_dict() == {**V1_STATUS, **new_keys}  # v1 keys kept, new ones added
    assert status.lanes[2] == LaneStatus("cold-1", "cold", "base", "idle", 2, pid=4242, threads=2)
    assert "pid" not in status.to_dict()["lanes"][0]  # a hot slot has no process of its own
    assert status.ready and not status.draining


def test_status_round_trip_with_counters():
    status = DaemonStatus(status=DaemonState.DRAINING, model="base", queue=3, workers={"hot": 1, "cold": 0},
                          lanes=(LaneStatus("hot", "hot", "base", "busy", 7),),
                          counters={"retries": 1, "dropped_running": 2}, served=7, uptime=3.5,
                          active=4, queue_size=64, decoded_audio_budget=256 << 20, request_reserve=3840000,
                          max_cold_workers=2)
    back = DaemonStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    assert back == status
    assert back.draining and not back.ready and back.counters["dropped_running"] == 2


def test_status_tolerates_unknown_and_missing_keys():
    newer = DaemonStatus.from_dict({**V1_STATUS, "status": "warming", "gpu": {"free_mb": 100},
                                    "lanes": [{**V1_STATUS["lanes"][0], "temperature_c": 60}],
                                    "counters": {"retries": 2, "idle_exits": 1}})
    assert newer.status == "warming" and not newer.ready  # a state this version does not know
    assert newer.lanes == (LaneStatus("hot", "hot", "tiny.en", "busy", 3),)
    assert newer.counters == {"retries": 2, "idle_exits": 1}
    older = DaemonStatus.from_dict({"status": "ready", "model": "tiny.en"})
    assert older.ready and older.queue == 0 and older.lanes == () and older.counters == {}
    assert older.spawn_to_ready_s is None
    assert (older.queue_size, older.decoded_audio_budget, older.max_cold_workers) == (0, 0, 0)  # "not reported"


def test_lane_state_enum_travels_as_its_value():
    from enum import Enum

    class State(Enum):
        BUSY = "busy"

    lane = LaneStatus.from_dict({"id": "hot", "kind": "hot", "model": "m", "state": State.BUSY})
    assert lane.state == "busy" and json.dumps(lane.to_dict())


def test_model_list_round_trip_and_tolerance():
    models = [ModelEntry("tiny.en", loaded=True, multilingual=False, default=True),
              ModelEntry("base", multilingual=True)]
    result = model_list_dict(models)
    assert result == {"models": [
        {"id": "tiny.en", "loaded": True, "multilingual": False, "default": True},
        {"id": "base", "loaded": False, "multilingual": True, "default": False}]}
    assert model_list_from_dict(wire(protocol.result_frame("m", result))["result"]) == models
    assert model_list_from_dict({"models": [{"id": "x", "size_mb": 75}, {"no": "id"}]}) == [ModelEntry("x")]
