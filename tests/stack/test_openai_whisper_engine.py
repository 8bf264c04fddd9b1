"""The openai-whisper engine on real weights (tiny.en from CTranslate2) and real speech."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, LONG_TEXT, word_recall, words
from whisperd.core.errors import ConfigError, InvalidParameter
from whisperd.core.transcript import Segment
from whisperd.daemon.models import installed_models
from whisperd.engines import load_engine
from whisperd.engines.base import Options
from whisperd.engines.openai.engine import OpenAIWhisperEngine


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def decode_file(path: Path) -> np.ndarray:
    from whisperd.daemon.audio import decode_audio

    return decode_audio(path.read_bytes())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def models(cache_dir):
    return installed_models(cache_dir)


@pytest.fixture(scope="module")
def engine(models, cache_dir) -> OpenAIWhisperEngine:
    return load_engine("openai-whisper", models["tiny.en"], cache_dir=str(cache_dir))


@pytest.fixture(scope="module")
def fox() -> np.ndarray:
    return read_wav(FOX_FILES["wav"])


@pytest.fixture(scope="module")
def fox_words(engine, fox):
    """tiny.en on the fox clip with word timestamps, and what on_segment saw."""
    seen: list[Segment] = []
    return engine.transcribe(fox, Options(word_timestamps=True), on_segment=seen.append), seen


def test_engine_shape(engine):
    assert isinstance(engine, OpenAIWhisperEngine)
    assert (engine.name, engine.device, engine.compute_type) == ("openai-whisper", "cpu", "float32")


def test_transcribes_real_speech(fox_words, fox):
    result, seen = fox_words
    assert word_recall(FOX_TEXT, result.text) >= 0.8, result.text
    assert result.language == "en" and result.task == "transcribe"
    assert result.duration == pytest.approx(len(fox) / 16000)
    assert result.segments and list(seen) == list(result.segments)
    for i, seg in enumerate(result.segments):
        assert seg.id == i and seg.seek == 0
        assert 0.0 <= seg.start < seg.end <= result.duration + 0.5
        assert seg.tokens and seg.text.strip()
        assert seg.avg_logprob < 0.0 and 0.0 <= seg.no_speech_prob <= 1.0
        assert seg.temperature == 0.0 and seg.compression_ratio > 0.0


def test_word_timestamps(fox_words):
    result, _ = fox_words
    got = result.words
    assert got and words("".join(w.word for w in got)) == words(result.text)
    previous_end = 0.0
    for w in got:
        assert 0.0 <= w.start <= w.end <= result.duration
        assert w.start >= previous_end - 1e-6  # in order, no overlap
        assert 0.0 < w.probability <= 1.0
        previous_end = w.end


def test_same_result_as_whisper_transcribe(engine, fox, fox_words):
    """The engine's incremental loop reproduces openai-whisper's own transcribe()."""
    import whisper

    result, _ = fox_words
    # The engine's own model object: the same weights, so the same decode.
    ref = whisper.transcribe(
        engine._whisper, fox, beam_size=5, best_of=5, word_timestamps=True, fp16=False
    )
    ref_segments = [s for s in ref["segments"] if s["text"].strip()]
    assert [(s.start, s.end, s.text, list(s.tokens)) for s in result.segments] == [
        (s["start"], s["end"], s["text"], s["tokens"]) for s in ref_segments
    ]
    assert [(w.word, w.start, w.end) for w in result.words] == [
        (w["word"], w["start"], w["end"]) for s in ref_segments for w in s["words"]
    ]


def test_same_words_as_faster_whisper(fox_words, models, fox):
    """The key acceptance check: converted weights hear what CTranslate2 hears."""
    from faster_whisper import WhisperModel

    ours, _ = fox_words  # beam 5; word timestamps do not change the text
    fw = WhisperModel(
        str(models["tiny.en"].path), device="cpu", compute_type="float32", local_files_only=True
    )
    segments, info = fw.transcribe(fox, beam_size=5, language="en")
    theirs = "".join(s.text for s in segments)
    assert words(ours.text) == words(theirs)
    assert word_recall(FOX_TEXT, ours.text) >= 0.8


def test_long_audio_segments_arrive_while_decoding(engine, monkeypatch):
    """32 s is two windows: window one's segments are out before window two is decoded."""
    audio = decode_file(LONG_FILE)
    decodes = 0
    real_decode = engine._whisper.decode

    def counting_decode(*args, **kwargs):
        nonlocal decodes
        decodes += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(engine._whisper, "decode", counting_decode)
    seen: list[tuple[int, Segment]] = []
    result = engine.transcribe(audio, Options(beam_size=1), lambda s: seen.append((decodes, s)))

    assert word_recall(LONG_TEXT, result.text) >= 0.8, result.text
    assert [s for _, s in seen] == list(result.segments)
    assert seen[0][0] < decodes  # delivered before decoding finished
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end > 30.0
    assert len({s.seek for s in result.segments}) >= 2


def test_loads_an_official_style_checkpoint(models, tmp_path):
    """A float16 `<name>.pt` without heads (as openai-whisper downloads them) loads as float32
    with openai-whisper's published alignment heads for that name."""
    import json

    import torch

    from whisperd.engines.base import ModelInfo
    from whisperd.engines.openai import convert

    checkpoint = convert.convert(models["tiny.en"].path)
    del checkpoint["alignment_heads"]
    state = checkpoint["model_state_dict"]
    checkpoint["model_state_dict"] = {k: v.half() for k, v in state.items()}
    torch.save(checkpoint, tmp_path / "tiny.en.pt")
    info = ModelInfo("tiny.en", "openai-whisper", tmp_path / "tiny.en.pt", False)

    loaded = OpenAIWhisperEngine(info)._whisper
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    heads = json.loads((models["tiny.en"].path / "config.json").read_text())["alignment_heads"]
    assert sorted(loaded.alignment_heads.to_dense().nonzero().tolist()) == sorted(heads)


def test_the_language_is_mapped_onto_the_model(engine, fox):
    """Which languages and tasks a model may be asked for is the daemon's check
    (tests/stack/test_api_*: unsupported_for_model); the engine maps the code onto
    its tokenizer, and refuses one the model has no token for."""
    with pytest.raises(InvalidParameter):
        engine.transcribe(fox, Options(language="xx"))
    assert engine.transcribe(fox, Options(language="en", beam_size=1)).language == "en"


@pytest.mark.parametrize("kwargs", [{"compute_type": "int8"}, {"device": "tpu"}])
def test_bad_settings_are_config_errors(models, cache_dir, kwargs):
    with pytest.raises(ConfigError):
        OpenAIWhisperEngine(models["tiny.en"], cache_dir=cache_dir, **kwargs)


def test_import_is_light():
    code = (
        "import sys, whisperd.engines.openai.engine, whisperd.engines.openai.convert;"
        "heavy = {'torch', 'whisper', 'ctranslate2'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_multilingual_base(models, cache_dir, fox):
    """The 51865-token multilingual model converts too, and detects the language itself."""
    engine = OpenAIWhisperEngine(models["base"], cache_dir=cache_dir)
    result = engine.transcribe(fox, Options(beam_size=1))
    assert result.language == "en"
    assert word_recall(FOX_TEXT, result.text) >= 0.8, result.text
    with pytest.raises(InvalidParameter):  # base knows the first 99 languages; "yue" came later
        engine.transcribe(fox, Options(language="yue"))
