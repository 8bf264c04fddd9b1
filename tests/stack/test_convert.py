"""CTranslate2 model.bin → openai-whisper checkpoint: real weights, real files."""

from __future__ import annotations

import os
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from testing.speech import FOX_FILES
from whisperd.core.errors import EngineError
from whisperd.daemon.models import installed_models
from whisperd.engines.base import ModelInfo
from whisperd.engines.openai import convert

TINY_EN_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_en(cache_dir) -> ModelInfo:
    return installed_models(cache_dir)["tiny.en"]


@pytest.fixture(scope="module")
def checkpoint(tiny_en, cache_dir) -> dict:
    return convert.load_checkpoint(convert.checkpoint_path(tiny_en, cache_dir))


def test_dims_of_tiny_en(checkpoint):
    assert checkpoint["dims"] == TINY_EN_DIMS


def test_state_dict_is_whisper_float32(checkpoint):
    import torch
    from whisper.model import ModelDimensions, Whisper, sinusoids

    expected = Whisper(ModelDimensions(**checkpoint["dims"])).state_dict()
    got = checkpoint["model_state_dict"]
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert got[name].shape == tensor.shape, name
        assert got[name].dtype == torch.float32, name
    # Real weights, not an initialiser's: layer norms are trained away from 1.
    assert not torch.allclose(got["encoder.ln_post.weight"], torch.ones(384))
    # The encoder's positional table is whisper's sinusoids (stored as float16 by CT2).
    table = sinusoids(1500, 384)
    assert torch.allclose(got["encoder.positional_embedding"], table, atol=1e-3)


def test_alignment_heads_from_config(checkpoint, tiny_en):
    import json

    heads = json.loads((tiny_en.path / "config.json").read_text())["alignment_heads"]
    assert checkpoint["alignment_heads"] == heads
    model = convert.load_whisper_model(checkpoint)
    mask = model.alignment_heads.to_dense()
    assert sorted(mask.nonzero().tolist()) == sorted(heads)


def test_encoder_matches_ctranslate2(checkpoint, tiny_en):
    """Same mel in, same encoder states out as CTranslate2 itself computes (float32)."""
    import ctranslate2
    import torch
    import whisper

    with wave.open(str(FOX_FILES["wav"])) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), 80)[None]
    ct2 = ctranslate2.models.Whisper(str(tiny_en.path), device="cpu", compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(mel.numpy().copy())))
    with torch.no_grad():
        ours = convert.load_whisper_model(checkpoint).encoder(mel).numpy()
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3


def test_cache_is_reused(tiny_en, cache_dir, checkpoint):
    first = convert.checkpoint_path(tiny_en, cache_dir)
    stamp = first.stat().st_mtime_ns
    second = convert.checkpoint_path(tiny_en, cache_dir)
    assert second == first
    assert second.stat().st_mtime_ns == stamp  # not rewritten
    # Written through a temporary sibling that is gone afterwards.
    assert [p.name for p in first.parent.iterdir()] == [first.name]


def test_changed_model_bin_is_converted_again(tiny_en, tmp_path):
    copy = tmp_path / "tiny.en"
    shutil.copytree(tiny_en.path, copy)
    model = ModelInfo("tiny.en", "ctranslate2", copy, False)
    cache = tmp_path / "cache"
    first = convert.checkpoint_path(model, cache)
    later = first.stat().st_mtime_ns // 1_000_000_000 + 10
    os.utime(copy / "model.bin", (later, later))
    second = convert.checkpoint_path(model, cache)
    assert second != first and second.is_file()


def _write_ct2(path: Path, spec: str, variables: dict[str, np.ndarray], version: int = 6) -> None:
    """A minimal model.bin in CTranslate2's layout, for malformed-input tests."""

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", version) + string(spec) + struct.pack("<I", 1)
    out += struct.pack("<I", len(variables))
    for name, arr in variables.items():
        out += string(name) + struct.pack("<B", arr.ndim)
        out += b"".join(struct.pack("<I", d) for d in arr.shape)
        out += struct.pack("<BI", 0, arr.nbytes) + arr.tobytes()
    path.write_bytes(out + struct.pack("<I", 0))


@pytest.mark.parametrize(
    "spec, version, message",
    [
        ("WhisperSpec", 5, "binary version 5"),
        ("TransformerSpec", 6, "not a Whisper model"),
        ("WhisperSpec", 6, "is this a Whisper model"),  # no encoder variables
    ],
)
def test_wrong_files_are_typed_errors(tmp_path, spec, version, message):
    _write_ct2(tmp_path / "model.bin", spec, {"x": np.zeros(3, np.float32)}, version)
    with pytest.raises(EngineError, match=message):
        convert.convert(tmp_path)


def test_truncated_model_bin(tiny_en, tmp_path):
    with (tiny_en.path / "model.bin").open("rb") as f:
        (tmp_path / "model.bin").write_bytes(f.read(100_000))
    with pytest.raises(EngineError, match="truncated|does not match"):
        convert.convert(tmp_path)


# --- every storage type CTranslate2 writes, through its own writer ------------------


def _small_whisper_state(dims) -> dict[str, np.ndarray]:
    from whisper.model import Whisper

    rng = np.random.default_rng(0)
    # Random values everywhere (biases too): a mapping mistake cannot hide behind zeros.
    return {
        k: rng.standard_normal(v.shape).astype(np.float32)
        for k, v in Whisper(dims).state_dict().items()
    }


def _ct2_spec(state: dict[str, np.ndarray], dims):
    """openai-whisper names → CTranslate2's WhisperSpec: the mapping in reverse."""
    from ctranslate2.specs import whisper_spec

    get = lambda k: state[k].copy()  # noqa: E731 - CT2 quantizes arrays in place

    def linear(spec, name, bias=True):
        spec.weight = get(f"{name}.weight")
        if bias:
            spec.bias = get(f"{name}.bias")

    def norm(spec, name):
        spec.gamma, spec.beta = get(f"{name}.weight"), get(f"{name}.bias")

    def fused(spec, name, parts):
        zeros = np.zeros(dims.n_text_state, np.float32)  # the key's missing bias
        spec.weight = np.concatenate([get(f"{name}.{p}.weight") for p in parts])
        spec.bias = np.concatenate([state.get(f"{name}.{p}.bias", zeros) for p in parts])

    def block(spec, name, cross):
        fused(spec.self_attention.linear[0], f"{name}.attn", ("query", "key", "value"))
        linear(spec.self_attention.linear[1], f"{name}.attn.out")
        norm(spec.self_attention.layer_norm, f"{name}.attn_ln")
        if cross:
            linear(spec.attention.linear[0], f"{name}.cross_attn.query")
            fused(spec.attention.linear[1], f"{name}.cross_attn", ("key", "value"))
            linear(spec.attention.linear[2], f"{name}.cross_attn.out")
            norm(spec.attention.layer_norm, f"{name}.cross_attn_ln")
        linear(spec.ffn.linear_0, f"{name}.mlp.0")
        linear(spec.ffn.linear_1, f"{name}.mlp.2")
        norm(spec.ffn.layer_norm, f"{name}.mlp_ln")

    spec = whisper_spec.WhisperSpec(
        dims.n_audio_layer, dims.n_audio_head, dims.n_text_layer, dims.n_text_head
    )
    linear(spec.encoder.conv1, "encoder.conv1")
    linear(spec.encoder.conv2, "encoder.conv2")
    spec.encoder.position_encodings.encodings = get("encoder.positional_embedding")
    for i, layer in enumerate(spec.encoder.layer):
        block(layer, f"encoder.blocks.{i}", cross=False)
    norm(spec.encoder.layer_norm, "encoder.ln_post")
    spec.decoder.embeddings.weight = get("decoder.token_embedding.weight")
    spec.decoder.projection.weight = get("decoder.token_embedding.weight")  # becomes an alias
    spec.decoder.position_encodings.encodings = get("decoder.positional_embedding")
    for i, layer in enumerate(spec.decoder.layer):
        block(layer, f"decoder.blocks.{i}", cross=True)
    norm(spec.decoder.layer_norm, "decoder.ln")
    spec.register_vocabulary([f"t{i}" for i in range(dims.n_vocab)])
    return spec


@pytest.mark.parametrize(
    "quantization, tolerance",
    [("float32", 0.0), ("float16", 2e-3), ("bfloat16", 2e-2), ("int16", 5e-3), ("int8", 5e-2)],
)
def test_every_ctranslate2_storage_type(tmp_path, quantization, tolerance):
    from whisper.model import ModelDimensions

    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=8, n_audio_state=8, n_audio_head=2, n_audio_layer=2,
        n_vocab=16, n_text_ctx=6, n_text_state=8, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    state = _small_whisper_state(dims)
    spec = _ct2_spec(state, dims)
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(tmp_path))

    checkpoint = convert.convert(tmp_path)
    assert checkpoint["dims"] == vars(dims)
    got = checkpoint["model_state_dict"]
    assert set(got) == set(state)
    for name, want in state.items():
        err = float(np.abs(got[name].numpy() - want).max())
        assert err <= tolerance * max(1.0, float(np.abs(want).max())), (name, err)
