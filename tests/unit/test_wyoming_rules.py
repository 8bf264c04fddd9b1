"""The Wyoming front's pure parts: audio formats and the mono mix, what a transcript-chunk carries,
the event reader's checks, `info`, and its settings."""

from __future__ import annotations

import asyncio
import json
from array import array

import pytest

from whisperd.core.errors import ConfigError, FrameTooLarge
from whisperd.core.languages import LANGUAGES
from whisperd.core.replies import ModelEntry
from whisperd.core.settings import build, from_command_line
from whisperd_wyoming.audio import MonoMixer, UnsupportedAudio, audio_format, average_channels
from whisperd_wyoming.chunks import StableText
from whisperd_wyoming.config import DEFAULT_URI, WYOMING_SETTINGS, WyomingConfig, check, listen_on
from whisperd_wyoming.discovery import advertised_address
from whisperd_wyoming.framing import MAX_PAYLOAD, BadEvent, parse_header, read_event
from whisperd_wyoming.info import build_info, model_languages


def pcm(*samples: int) -> bytes:
    return array("h", samples).tobytes()


# --- audio ------------------------------------------------------------------------------


def test_only_16_bit_audio_is_taken():
    assert audio_format(16000, 2, 1).frame_bytes == 2
    assert audio_format(48000, 2, 2).frame_bytes == 4
    for width in (1, 3, 4):
        with pytest.raises(UnsupportedAudio, match="16-bit") as err:
            audio_format(16000, width, 1)
        assert err.value.code == "unsupported_audio" and err.value.param == "width"


@pytest.mark.parametrize("rate, width, channels", [("16000", 2, 1), (16000, 2, 0), (16000, True, 1),
                                                   (-1, 2, 1), (16000, 2, 9)])
def test_nonsense_formats_are_refused(rate, width, channels):
    with pytest.raises(UnsupportedAudio):
        audio_format(rate, width, channels)


def test_channels_are_averaged_without_clipping():
    assert average_channels(pcm(32767, 32767, -32768, -32768), 2) == pcm(32767, -32768)
    assert average_channels(pcm(1, 2, 3, 4, 5, 6), 3) == pcm(2, 5)
    assert average_channels(pcm(7, -7), 1) == pcm(7, -7)


def test_a_frame_split_across_chunks_waits_for_its_rest():
    mixer = MonoMixer(2)
    data = pcm(10, 20, 30, 40, 50, 60)
    out = mixer.feed(data[:5]) + mixer.feed(data[5:9]) + mixer.feed(data[9:])
    assert out == pcm(15, 35, 55)


# --- transcript-chunks ------------------------------------------------------------------


def test_chunks_carry_newly_stable_text_and_join_into_the_final():
    t = StableText()
    partials = ["", "And so", "And so", "And so my fellow", "And so my fellow Americans,"]
    chunks = [t.advance(p) for p in partials]
    chunks.append(t.rest("And so my fellow Americans, ask not."))
    assert [c for c in chunks if c] == ["And so", " my fellow", " Americans,", " ask not."]
    assert "".join(chunks) == "And so my fellow Americans, ask not."


def test_stable_text_that_does_not_continue_is_never_sent():
    t = StableText()
    t.advance("ask not")
    assert t.advance("asked not what") == ""  # would contradict a chunk already sent
    assert t.rest("ask not what your country") == " what your country"


# --- the event reader -------------------------------------------------------------------


def read(data: bytes):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_event(reader)

    return asyncio.run(go())


def test_an_event_with_data_and_payload_reads_as_wyoming_writes_it():
    data = json.dumps({"rate": 16000, "width": 2, "channels": 1}).encode()
    header = {"type": "audio-chunk", "data": {"timestamp": 5}, "data_length": len(data), "payload_length": 4,
              "version": "1.10.2"}
    event = read(json.dumps(header).encode() + b"\n" + data + b"\1\2\3\4")
    assert event.type == "audio-chunk"
    assert event.data == {"timestamp": 5, "rate": 16000, "width": 2, "channels": 1}
    assert event.payload == b"\1\2\3\4"


def test_an_end_of_stream_is_none_even_inside_an_event():
    assert read(b"") is None
    assert read(b'{"type": "audio-chunk", "payload_length": 10}\n\0\0') is None
    assert read(b'{"type": "describe"') is None


@pytest.mark.parametrize("line", [b"nope\n", b"[]\n", b'{"type": 5}\n', b'{"type": "x", "data": []}\n',
                                  b'{"type": "x", "payload_length": "9"}\n', b'{"type": "x", "data_length": true}\n',
                                  b"\xff\xfe\n"])
def test_a_malformed_header_is_a_typed_error(line):
    with pytest.raises(BadEvent) as err:
        parse_header(line)
    assert err.value.code == "bad_event"


def test_lengths_are_capped_before_anything_is_read():
    with pytest.raises(FrameTooLarge):
        parse_header(json.dumps({"type": "audio-chunk", "payload_length": MAX_PAYLOAD + 1}).encode())
    with pytest.raises(FrameTooLarge):
        read(b'{"type": "x", "data": {"pad": "' + b"x" * (1 << 17) + b'"}}\n')  # a header past the limit


def test_data_that_is_not_an_object_is_a_typed_error():
    with pytest.raises(BadEvent):
        read(b'{"type": "x", "data_length": 2}\n[]')


# --- info -------------------------------------------------------------------------------


def test_info_lists_each_model_with_its_languages_the_default_first():
    models = [ModelEntry("base", multilingual=True), ModelEntry("tiny.en", default=True)]
    assert model_languages(models[1]) == ["en"]
    assert model_languages(models[0]) == list(LANGUAGES)
    info = build_info(models)
    (program,) = info.asr
    assert program.name == "whisperd" and program.supports_transcript_streaming
    assert [m.name for m in program.models] == ["tiny.en", "base"]
    assert program.models[1].languages == list(LANGUAGES)
    assert info.event().data["asr"][0]["models"][0]["languages"] == ["en"]


# --- settings ---------------------------------------------------------------------------


def config(argv=(), env=None, path="/dev/null") -> WyomingConfig:
    cfg, _ = from_command_line("whisperd-wyoming", "", WyomingConfig, WYOMING_SETTINGS, "wyoming",
                               ["--config", path, *argv], env or {})
    return cfg


def test_defaults_listen_on_loopback_port_10300_without_zeroconf():
    cfg = config()
    assert cfg.uri == DEFAULT_URI == "tcp://127.0.0.1:10300"
    assert cfg.listen.loopback_only and cfg.listen.port == 10300
    assert cfg.zeroconf == "" and cfg.socket == "/run/whisperd/whisperd.sock"


def test_zeroconf_alone_takes_the_programs_name_or_the_one_given():
    assert config(["--zeroconf"]).zeroconf == "whisperd"
    assert config(["--zeroconf", "kitchen"]).zeroconf == "kitchen"
    assert config(["--zeroconf", "--log-level", "debug"]).zeroconf == "whisperd"
    assert config(env={"WHISPERD_WYOMING_ZEROCONF": "off"}).zeroconf == ""
    with pytest.raises(ConfigError, match="DNS label"):
        config(["--zeroconf", "a.b"])


def test_the_environment_names_are_the_fronts_own(tmp_path):
    conf = tmp_path / "w.conf"
    conf.write_text("[wyoming]\nuri = tcp://0.0.0.0:10301\nidle_timeout = 5\n[shim]\nport = 5001\n")
    cfg = config(path=str(conf), env={"WHISPERD_WYOMING_IDLE_TIMEOUT": "7", "WHISPERD_URI": "tcp://x:1"})
    assert cfg.uri == "tcp://0.0.0.0:10301" and not cfg.listen.loopback_only
    assert cfg.idle_timeout == 7.0 and cfg.sources["idle_timeout"] == "env:WHISPERD_WYOMING_IDLE_TIMEOUT"
    assert all(s.env_name.startswith("WHISPERD_WYOMING_") for s in WYOMING_SETTINGS)
    conf.write_text("[wyoming]\nport = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        build(WyomingConfig, WYOMING_SETTINGS, "wyoming", {}, {}, str(conf))


@pytest.mark.parametrize("uri", ["stdio://", "tcp://127.0.0.1", "tcp://:10300", "http://127.0.0.1:10300",
                                 "unix://", "tcp://127.0.0.1:99999"])
def test_only_tcp_and_unix_uris_with_an_address_are_taken(uri):
    with pytest.raises(ConfigError):
        config(["--uri", uri])


def test_what_counts_as_loopback_and_what_zeroconf_advertises():
    assert listen_on("unix:///run/w.sock").loopback_only
    assert listen_on("tcp://localhost:1").loopback_only and listen_on("tcp://[::1]:1").loopback_only
    assert not listen_on("tcp://192.0.2.7:10300").loopback_only
    assert advertised_address(listen_on("tcp://192.0.2.7:10300")) == "192.0.2.7"


def test_zeroconf_is_refused_where_the_lan_cannot_reach_the_server():
    for uri in (DEFAULT_URI, "unix:///run/w.sock"):
        with pytest.raises(ConfigError, match="LAN"):
            check(config(["--zeroconf", "--uri", uri]))
    check(config(["--zeroconf", "--uri", "tcp://0.0.0.0:10300"]))
    check(config())
