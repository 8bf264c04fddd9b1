"""OpenAI Realtime transcription (`GET /v1/realtime?intent=transcription`) through the official SDK.

The real daemon and shim (testing/stack), the `openai` package's Realtime clients (GA
`client.realtime`, beta `client.beta.realtime`) pointed at the shim, real speech
(`jfk.wav`, converted to OpenAI's 24 kHz pcm16 here; the daemon resamples it to 16 kHz).
One session is paced in real time (JFK, 11 s): deltas must come while the man speaks;
the others send faster than real time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import defaultdict
from typing import Any

import pytest
import websockets
import websockets.exceptions  # a submodule: not loaded by `import websockets` alone
from openai import AsyncOpenAI

from bench.wer import wer
from testing.live import pcm16
from testing.speech import FIXTURES, FOX_TEXT, JFK_FILE, JFK_TEXT, word_recall
from testing.stack import Daemon, Shim, Stack, status

RATE = 24_000
CHUNK = RATE * 2 // 10  # 100 ms of pcm16
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
WAIT = 120  # seconds: a bound on a hung test, never a speed requirement


def pcm24(path) -> bytes:
    return pcm16(path, RATE)


def silence(seconds: float) -> bytes:
    return b"\0" * (int(RATE * seconds) * 2)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def ws_url(stack) -> str:
    return stack.url.replace("http://", "ws://") + "/v1"


def sdk(stack, api_key: str = "unused") -> AsyncOpenAI:
    # The beta client builds wss:// from base_url; websocket_base_url keeps it on plain ws.
    return AsyncOpenAI(base_url=stack.url + "/v1", websocket_base_url=ws_url(stack), api_key=api_key, max_retries=0)


def connect(stack, *, beta: bool = False, api_key: str = "unused", **kw: Any):
    client = sdk(stack, api_key)
    if beta:
        return client.beta.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}, **kw)
    return client.realtime.connect(extra_query={"intent": "transcription"}, **kw)


def ga_session(turn_detection: Any = "server_vad", **input_: Any) -> dict[str, Any]:
    if turn_detection == "server_vad":
        turn_detection = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                          "silence_duration_ms": 500}
    return {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": RATE},
        "transcription": {"model": "whisper-1", "language": "en"},
        "turn_detection": turn_detection, **input_}}}


async def next_of(conn, *types: str, seen: list | None = None):
    """The next event of one of `types` (the ones before it go to `seen`)."""
    async with asyncio.timeout(WAIT):
        async for event in conn:
            if event.type in types:
                return event
            if seen is not None:
                seen.append(event)
    raise AssertionError(f"the connection closed before {types}")


async def send_audio(conn, pcm: bytes, *, pace: bool = False) -> None:
    started = time.monotonic()
    for n, at in enumerate(range(0, len(pcm), CHUNK)):
        await conn.input_audio_buffer.append(audio=b64(pcm[at:at + CHUNK]))
        if pace:  # on the wall clock, so a slow loop does not drift behind real time
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.monotonic()))


async def collect(conn, events: list, finished, started: float = 0.0) -> None:
    """Events (with when they came) into `events` until `finished()`, checked between them too."""
    async with asyncio.timeout(WAIT):
        while not finished():
            try:
                event = await asyncio.wait_for(conn.recv(), 0.25)  # cancelling recv loses nothing
            except TimeoutError:
                continue
            events.append((time.monotonic() - started, event))


def check_items(events: list[tuple[float, Any]]) -> dict[str, list[tuple[float, Any]]]:
    """Per item, its events in order; the deltas of each join to exactly its transcript."""
    by_item: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for at, e in events:
        item_id = getattr(e, "item_id", None) or getattr(getattr(e, "item", None), "id", None)
        if item_id:
            by_item[item_id].append((at, e))
    for item_id, its in by_item.items():
        assert item_id.startswith("item_")
        kinds = [e.type for _, e in its]
        completed = [e for _, e in its if e.type == COMPLETED]
        assert len(completed) == 1, kinds
        assert "".join(e.delta for _, e in its if e.type == DELTA) == completed[0].transcript, kinds
        assert completed[0].usage.type == "duration" and completed[0].usage.seconds > 0
        assert kinds[-1] == COMPLETED and kinds.index("input_audio_buffer.committed") < kinds.index(COMPLETED)
        if "input_audio_buffer.speech_started" in kinds:
            assert kinds[0] == "input_audio_buffer.speech_started"
            assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")
    return by_item


def transcripts(events) -> list[str]:
    return [e.transcript for _, e in events if e.type == COMPLETED]


# --- speech ----------------------------------------------------------------------------------


def test_ga_real_time_speech_gives_deltas_while_he_speaks(fw_stack):
    pcm = pcm24(JFK_FILE) + silence(1.5)

    async def run():
        events: list[tuple[float, Any]] = []
        async with connect(fw_stack) as conn:
            created = await conn.recv()
            assert created.type == "session.created" and created.session.type == "transcription"
            assert created.session.audio.input.format.rate == RATE
            await conn.session.update(session=ga_session())
            updated = await next_of(conn, "session.updated")
            assert updated.session.audio.input.turn_detection.silence_duration_ms == 500
            started = time.monotonic()
            sender = asyncio.ensure_future(send_audio(conn, pcm, pace=True))
            def finished() -> bool:
                kinds = [e.type for _, e in events]
                return sender.done() and kinds.count(COMPLETED) == kinds.count("input_audio_buffer.speech_started")

            await collect(conn, events, finished, started)
            await sender
        return events, len(pcm) / 2 / RATE

    events, audio_s = asyncio.run(run())
    assert all(e.event_id.startswith("event_") for _, e in events)
    by_item = check_items(events)
    assert len(by_item) >= 2  # JFK pauses: more than one utterance in one session
    for its in by_item.values():
        kinds = [e.type for _, e in its]
        assert kinds.index("conversation.item.added") < kinds.index("conversation.item.done") < kinds.index(COMPLETED)
    joined = " ".join(transcripts(events))
    assert wer(JFK_TEXT, joined) <= 0.2, joined
    deltas = [at for at, e in events if e.type == DELTA]
    # Words while he speaks: the first delta long before the last audio is sent, and some
    # delta of an utterance before that utterance's speech_stopped.
    assert deltas and deltas[0] < audio_s - 3.0, (deltas, audio_s)
    early = [item for item, its in by_item.items()
             if any(e.type == DELTA for _, e in its[:[e.type for _, e in its].index("input_audio_buffer.speech_stopped")])]
    assert early, [[e.type for _, e in its] for its in by_item.values()]
    # What the bench reports: the first delta after speech onset, the final after speech stopped.
    for item, its in by_item.items():
        t = {e.type: at for at, e in reversed(its)}
        print(f"{item}: first delta {t.get(DELTA, float('nan')) - t['input_audio_buffer.speech_started']:.2f} s "
              f"after speech_started, completed {t[COMPLETED] - t['input_audio_buffer.speech_stopped']:.2f} s "
              "after speech_stopped")


def test_beta_two_utterances_in_one_session(fw_stack):
    fox = pcm24(FIXTURES / "fox.wav")

    async def run():
        events = []
        async with connect(fw_stack, beta=True) as conn:
            created = await conn.recv()
            assert created.type == "transcription_session.created"
            await conn.transcription_session.update(session={
                "input_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}})
            updated = await next_of(conn, "transcription_session.updated")
            assert updated.session.input_audio_format == "pcm16"
            await send_audio(conn, fox + silence(1.5) + fox + silence(1.5))  # faster than real time
            await collect(conn, events, lambda: [e.type for _, e in events].count(COMPLETED) == 2)
        return events

    events = asyncio.run(run())
    by_item = check_items(events)
    assert len(by_item) == 2
    created = [e for _, e in events if e.type == "conversation.item.created"]
    first, second = (e.item.id for e in created)
    assert created[0].previous_item_id is None and created[1].previous_item_id == first != second
    for text in transcripts(events):
        assert word_recall(FOX_TEXT, text) >= 0.8, text


def test_manual_commit_with_turn_detection_null(fw_stack):
    async def run():
        async with connect(fw_stack) as conn:
            await conn.session.update(session=ga_session(turn_detection=None))
            updated = await next_of(conn, "session.updated")
            assert updated.session.audio.input.turn_detection is None
            await send_audio(conn, pcm24(JFK_FILE))
            await conn.input_audio_buffer.commit(event_id="commit-1")
            seen: list = []
            committed = await next_of(conn, "input_audio_buffer.committed", seen=seen)
            rest: list = []
            completed = await next_of(conn, COMPLETED, seen=rest)
            return seen, committed, rest, completed

    seen, committed, rest, completed = asyncio.run(run())
    assert not [e for e in seen if e.type.startswith("input_audio_buffer.speech")]  # no server VAD
    assert completed.item_id == committed.item_id
    deltas = [e.delta for e in seen + rest if e.type == DELTA]
    assert "".join(deltas) == completed.transcript
    assert wer(JFK_TEXT, completed.transcript) <= 0.2, completed.transcript


def test_bad_input_gets_errors_and_the_session_still_transcribes(fw_stack):
    fox = pcm24(FIXTURES / "fox.wav")

    async def run():
        errors = []
        async with connect(fw_stack) as conn:
            await conn.session.update(session=ga_session(turn_detection=None))
            await next_of(conn, "session.updated")

            async def refused(send) -> Any:
                await send()
                errors.append((await next_of(conn, "error")).error)

            await refused(lambda: conn.send_raw(json.dumps({"type": "response.create", "event_id": "bad-1"})))
            await refused(lambda: conn.send_raw("{this is not json"))
            await refused(lambda: conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"})))
            await refused(lambda: conn.send_raw(json.dumps({"type": "input_audio_buffer.append",
                                                            "audio": "A" * (16 << 20)})))
            await refused(lambda: conn.input_audio_buffer.commit())
            await refused(lambda: conn.send_raw(json.dumps({"type": "session.update", "session": {
                "type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}}})))
            await refused(lambda: conn.send_raw(json.dumps({"type": "session.update", "session": {
                "type": "transcription", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                                "threshold": 2}}}}})))
            await refused(lambda: conn.send_raw(json.dumps({"type": "session.update", "session": {
                "type": "transcription", "audio": {"input": {"transcription": {"model": "large-v9"}}}}})))
            await conn._connection.send(b"\x00\x01binary")
            errors.append((await next_of(conn, "error")).error)
            # Still the same healthy session: fox, committed by hand, transcribed.
            await send_audio(conn, fox)
            await conn.input_audio_buffer.commit()
            completed = await next_of(conn, COMPLETED)
        return errors, completed

    errors, completed = asyncio.run(run())
    codes = [(e.code, e.param) for e in errors]
    assert codes == [
        ("invalid_value", "type"), ("invalid_json", None), ("invalid_value", "audio"), ("event_too_large", None),
        ("input_audio_buffer_commit_empty", None), ("invalid_value", "session.audio.input.format.type"),
        ("invalid_value", "session.audio.input.turn_detection"),
        ("model_not_found", "session.audio.input.transcription.model"), ("invalid_value", None)], codes
    assert errors[0].event_id == "bad-1"
    assert all(e.type == "invalid_request_error" and e.message for e in errors)
    assert word_recall(FOX_TEXT, completed.transcript) >= 0.8, completed.transcript


def test_clear_drops_the_buffer(fw_stack):
    async def run():
        async with connect(fw_stack) as conn:
            await conn.session.update(session=ga_session(turn_detection=None))
            await next_of(conn, "session.updated")
            await send_audio(conn, pcm24(JFK_FILE)[: RATE * 2 * 3])
            await conn.input_audio_buffer.clear()
            await next_of(conn, "input_audio_buffer.cleared")
            await conn.input_audio_buffer.commit()
            return (await next_of(conn, "error")).error

    assert asyncio.run(run()).code == "input_audio_buffer_commit_empty"


def mulaw(pcm16: bytes) -> bytes:
    """16-bit PCM → G.711 mu-law (the standard companding, bias 0x84)."""
    import numpy as np

    s = np.frombuffer(pcm16, "<i2").astype(np.int32)
    sign = (s < 0).astype(np.int32)
    mag = np.minimum(np.abs(s), 32635) + 0x84
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~((sign << 7) | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def test_a_settings_change_restarts_the_daemon_stream_between_utterances(fw_stack):
    """pcm16 at 24 kHz committed by hand, then G.711 mu-law at 8 kHz with server VAD, in one session."""
    sock = fw_stack.daemon.socket
    opened_before = status(sock).live["live_sessions"]
    jfk8 = mulaw(pcm16(JFK_FILE, 8000)) + b"\xff" * 8000 * 2  # and 2 s of mu-law silence

    async def run():
        before: list = []
        async with connect(fw_stack) as conn:
            await conn.session.update(session=ga_session(turn_detection=None))
            await next_of(conn, "session.updated")
            await send_audio(conn, pcm24(FIXTURES / "fox.wav"))
            # Not committed: the new settings end the old stream, and its open speech gets its final.
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}}}})
            updated = await next_of(conn, "session.updated", seen=before)
            assert updated.session.audio.input.format.type == "audio/pcmu"
            for at in range(0, len(jfk8), 800):
                await conn.input_audio_buffer.append(audio=b64(jfk8[at:at + 800]))
            events = [(0.0, e) for e in before]

            def finished() -> bool:  # every utterance heard has its transcript, and they hold all his words
                kinds = [e.type for _, e in events]
                said = " ".join(e.transcript for _, e in events if e.type == COMPLETED)
                return (kinds.count(COMPLETED) == 1 + kinds.count("input_audio_buffer.speech_started")
                        and word_recall(JFK_TEXT, said) >= 0.8)

            await collect(conn, events, finished)
        return events

    events = asyncio.run(run())
    by_item = check_items(events)
    # The first stream's open speech, finalised when it ended: the one item that had no server VAD.
    unvoiced = [its for its in by_item.values() if its[0][1].type != "input_audio_buffer.speech_started"]
    assert len(unvoiced) == 1 and word_recall(FOX_TEXT, unvoiced[0][-1][1].transcript) >= 0.8
    assert status(sock).live["live_sessions"] - opened_before == 2
    assert wait_for(lambda: status(sock).live["sessions"] == 0)


# --- who may connect -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_shim(fw_stack):
    shim = Shim(fw_stack.daemon.socket, "--api-key", "s3cret")
    yield shim
    shim.stop()


def test_the_api_key_is_required_when_set(keyed_shim):
    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with connect(keyed_shim, api_key="wrong"):
                pass
        assert info.value.response.status_code == 401
        async with connect(keyed_shim, api_key="s3cret") as conn:
            assert (await conn.recv()).type == "session.created"
        # The browsers' form (the JS SDK's): the key as a subprotocol; an offered one is echoed.
        url = ws_url(keyed_shim) + "/realtime?intent=transcription"
        async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.s3cret"]) as ws:
            assert ws.subprotocol == "realtime"
            assert json.loads(await ws.recv())["type"] == "session.created"
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.nope"]):
                pass
        assert info.value.response.status_code == 401

    asyncio.run(run())


def test_a_page_on_another_origin_is_refused(fw_stack):
    async def run():
        url = ws_url(fw_stack) + "/realtime?intent=transcription"
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(url, origin="http://evil.example"):
                pass
        assert info.value.response.status_code == 403
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:  # DNS rebinding: a foreign Host
            async with websockets.connect(url.replace("127.0.0.1", "evil.example"), host="127.0.0.1",
                                          port=fw_stack.shim.port):
                pass
        assert info.value.response.status_code == 421

    asyncio.run(run())


def test_another_intent_gets_a_clear_error_and_close(fw_stack):
    async def run():
        async with websockets.connect(ws_url(fw_stack) + "/realtime?model=gpt-realtime") as ws:
            error = json.loads(await ws.recv())
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                await ws.recv()
        return error, info.value.rcvd

    error, close = asyncio.run(run())
    assert error["type"] == "error" and error["error"]["param"] == "intent" and "intent=transcription" in error[
        "error"]["message"]
    assert close.code == 1008 and "transcription" in close.reason


# --- what is left behind -------------------------------------------------------------------------


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_client_that_vanishes_mid_utterance_leaks_nothing(fw_stack):
    sock = fw_stack.daemon.socket
    assert wait_for(lambda: status(sock).live.get("sessions") == 0)

    async def run():
        conn = await connect(fw_stack).enter()
        await conn.session.update(session=ga_session())
        await next_of(conn, "session.updated")
        await send_audio(conn, pcm24(JFK_FILE)[: RATE * 2 * 4])  # stops in the middle of a word
        await next_of(conn, "input_audio_buffer.speech_started")
        opened = await asyncio.to_thread(lambda: status(sock).live.get("sessions"))
        conn._connection.transport.abort()  # no close frame, no FIN handshake: gone
        return opened

    assert asyncio.run(run()) == 1
    assert wait_for(lambda: status(sock).live.get("sessions") == 0), status(sock).live


def test_live_counters_in_metrics(fw_stack):
    async def one_utterance():
        async with connect(fw_stack) as conn:
            await conn.session.update(session=ga_session(turn_detection=None))
            await send_audio(conn, pcm24(FIXTURES / "fox.wav"))
            await conn.input_audio_buffer.commit()
            await next_of(conn, COMPLETED)

    asyncio.run(one_utterance())
    assert wait_for(lambda: status(fw_stack.daemon.socket).live["sessions"] == 0)
    code, body = fw_stack.shim.get("/metrics")
    live = status(fw_stack.daemon.socket).live
    assert code == 200
    values = {line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
              if line.startswith("whisperd_live_")}
    assert values["whisperd_live_utterances_total"] == live["live_utterances"] >= 1
    assert values["whisperd_live_partials_total"] == live["live_partials"]
    assert values["whisperd_live_sessions"] == 0 and values["whisperd_live_sessions_opened_total"] >= 1
    assert values["whisperd_live_final_latency_seconds_count"] == live["finals"] >= 1
    assert values["whisperd_live_final_latency_seconds_sum"] == pytest.approx(live["final_latency_s_sum"])
    assert live["final_latency_s_sum"] > 0


def test_sessions_past_the_daemons_cap_are_refused_clearly():
    stack = Stack("--engine", "faster-whisper", "--max-live-sessions", "2")
    try:
        refusals: list = []

        async def one(gate: asyncio.Event, opened: list):
            async with connect(stack) as conn:
                await conn.session.update(session=ga_session(turn_detection=None))
                await next_of(conn, "session.updated")
                await conn.input_audio_buffer.append(audio=b64(silence(0.5)))  # opens the daemon stream
                opened.append(1)
                error = asyncio.ensure_future(next_of(conn, "error"))
                error.add_done_callback(lambda _: refusals.append(1))
                held = asyncio.ensure_future(gate.wait())
                await asyncio.wait({error, held}, return_when=asyncio.FIRST_COMPLETED)
                if not error.done():  # not refused: it held its stream until every one had tried
                    error.cancel()
                    await asyncio.gather(error, return_exceptions=True)
                    await conn.input_audio_buffer.commit()
                    return "served", (await next_of(conn, COMPLETED)).transcript
                held.cancel()
                with pytest.raises(websockets.exceptions.ConnectionClosed):  # then the shim closes
                    await conn.recv()
                return "refused", (error.result().error, conn._connection.close_code)

        async def run():
            gate, opened = asyncio.Event(), []
            tasks = [asyncio.ensure_future(one(gate, opened)) for _ in range(20)]
            sock = stack.daemon.socket
            # Every session has tried once the daemon has answered all 20 (open or refused) and
            # each refusal has reached its client.
            def all_tried() -> bool:
                live = status(sock).live
                return len(opened) == 20 and live["sessions"] + live["live_refused"] == 20 \
                    and len(refusals) == live["live_refused"]

            tried = await asyncio.to_thread(wait_for, all_tried, WAIT)
            assert tried, status(sock).live
            gate.set()
            async with asyncio.timeout(WAIT):
                return await asyncio.gather(*tasks)

        results = asyncio.run(run())
        served = [r for kind, r in results if kind == "served"]
        refused = [r for kind, r in results if kind == "refused"]
        assert len(served) == 2 and len(refused) == 18, results
        for error, close_code in refused:
            assert error.code == "overloaded" and "max_live_sessions" in error.message and close_code == 1013
        assert served == ["", ""]  # half a second of silence says nothing
        live = status(stack.daemon.socket).live
        assert live["live_refused"] == 18 and wait_for(lambda: status(stack.daemon.socket).live["sessions"] == 0)
    finally:
        stack.stop()


def test_daemon_down_is_an_error_then_a_close():
    shim = Shim("/tmp/whisperd-test-no-such.sock")
    try:
        async def run():
            async with websockets.connect(ws_url(shim) + "/realtime?intent=transcription") as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(silence(0.2))}))
                error = json.loads(await ws.recv())
                with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                    await ws.recv()
            return error, info.value.rcvd

        error, close = asyncio.run(run())
        assert error["error"]["code"] == "not_ready" and "not running" in error["error"]["message"]
        assert close.code == 1013 and "not running" in close.reason
    finally:
        shim.stop()
