"""CTranslate2 Whisper directory → openai-whisper checkpoint, offline.

`model.bin` (written by `ctranslate2/specs/model_spec.py`, `_serialize`) is:

    u32 binary_version (6) │ str spec_name │ u32 spec_revision
    u32 n_variables, then per variable:
        str name │ u8 rank │ u32 dim × rank │ u8 dtype │ u32 n_bytes │ n_bytes data
    u32 n_aliases, then per alias: str alias │ str target_name

    str = u16 length (with the NUL) │ utf-8 bytes │ NUL;  all integers little-endian
    dtype: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16

The weights map one-to-one onto openai-whisper's names, except that CTranslate2
fuses attention projections (self-attention q|k|v, cross-attention k|v) and
gives the (bias-free) key projection a zero bias. The converted checkpoint is
`{"dims", "model_state_dict", "alignment_heads"}`, float32, cached on disk once.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from whisperd.core.errors import EngineError

if TYPE_CHECKING:
    import torch
    from whisper.model import ModelDimensions, Whisper

    from whisperd.engines.base import ModelInfo

# Bump when the conversion itself changes, so old cached checkpoints are not reused.
CONVERTER_VERSION = 1
# The layout below is CTranslate2's CURRENT_BINARY_VERSION since 3.0 (Whisper's era).
BINARY_VERSION = 6

_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: raw bits, widened below
}
_BFLOAT16 = 5


# --- reading model.bin -------------------------------------------------------------


class _Reader:
    def __init__(self, buf: np.ndarray) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise EngineError("model.bin is truncated")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.unpack("<H")
        raw = self.buf[self.pos : self.pos + n].tobytes()
        self.pos += n
        return raw.rstrip(b"\0").decode("utf-8", errors="replace")

    def array(self, dtype: np.dtype, shape: tuple[int, ...], n_bytes: int) -> np.ndarray:
        if self.pos + n_bytes > len(self.buf) or n_bytes != dtype.itemsize * int(np.prod(shape)):
            raise EngineError("model.bin has a variable whose size does not match its shape")
        out = self.buf[self.pos : self.pos + n_bytes].view(dtype)
        self.pos += n_bytes
        return out.reshape(shape)


def read_ct2_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 `model.bin`, by its slash name, as float32/int arrays.

    Quantized weights (int8/int16 with a `*_scale` sibling) come back dequantized.
    """
    try:
        # Mapped, not read: a large model is only ever held once, as float32.
        mapped = np.memmap(model_bin, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read {model_bin}: {e}") from None
    raw, aliases = _parse(mapped)
    variables = {name: _widen(dtype, arr) for name, (dtype, arr) in raw.items()}
    for alias, target in aliases.items():
        if target not in variables:
            raise EngineError(f"model.bin alias {alias!r} points at missing {target!r}")
        variables[alias] = variables[target]
    return _dequantize(variables)


def _parse(buf: np.ndarray) -> tuple[dict[str, tuple[int, np.ndarray]], dict[str, str]]:
    r = _Reader(buf)
    version = r.unpack("<I")
    if version != BINARY_VERSION:
        raise EngineError(
            f"model.bin binary version {version} is not supported (expected {BINARY_VERSION}); "
            "re-convert it with a current ctranslate2"
        )
    spec = r.string()
    r.unpack("<I")  # spec revision
    if spec != "WhisperSpec":
        raise EngineError(f"model.bin holds a {spec}, not a Whisper model")
    raw: dict[str, tuple[int, np.ndarray]] = {}
    for _ in range(r.unpack("<I")):
        name = r.string()
        shape = tuple(r.unpack("<I") for _ in range(r.unpack("<B")))
        type_id = r.unpack("<B")
        if type_id not in _DTYPES:
            raise EngineError(f"model.bin variable {name!r} has unknown dtype id {type_id}")
        raw[name] = (type_id, r.array(_DTYPES[type_id], shape, r.unpack("<I")))
    aliases: dict[str, str] = {}
    for _ in range(r.unpack("<I")):
        alias = r.string()
        aliases[alias] = r.string()
    return raw, aliases


def _widen(type_id: int, arr: np.ndarray) -> np.ndarray:
    if type_id == _BFLOAT16:
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    return arr.copy()  # integers: scalars, or quantized weights handled below


def _dequantize(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name in [n for n in variables if n.endswith("_scale")]:
        base = name[: -len("_scale")]
        q = variables.get(base)
        if q is None or q.dtype.kind != "i":
            continue
        scale = variables.pop(name).astype(np.float32)
        # CTranslate2 stored round(w * scale), one scale per output row (or one in all).
        variables[base] = q.astype(np.float32) / scale.reshape((-1,) + (1,) * (q.ndim - 1))
    return variables


# --- CTranslate2 names → openai-whisper names ---------------------------------------


def _layer_count(variables: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    if name not in variables:
        raise EngineError(f"model.bin has no {name!r}; is this a Whisper model?")
    return int(variables[name].reshape(()))


def _dims(v: dict[str, np.ndarray]) -> dict[str, int]:
    try:
        audio_ctx, audio_state = v["encoder/position_encodings/encodings"].shape
        text_ctx, text_state = v["decoder/position_encodings/encodings"].shape
        return {
            "n_mels": int(v["encoder/conv1/weight"].shape[1]),
            "n_audio_ctx": int(audio_ctx),
            "n_audio_state": int(audio_state),
            "n_audio_head": _scalar(v, "encoder/num_heads"),
            "n_audio_layer": _layer_count(v, "encoder"),
            "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
            "n_text_ctx": int(text_ctx),
            "n_text_state": int(text_state),
            "n_text_head": _scalar(v, "decoder/num_heads"),
            "n_text_layer": _layer_count(v, "decoder"),
        }
    except KeyError as e:
        raise EngineError(f"model.bin has no {e.args[0]!r}; is this a Whisper model?") from None


def _linear(v: dict, src: str, dst: str, *, bias: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", v[f"{src}/weight"]
    if bias:
        yield f"{dst}.bias", v[f"{src}/bias"]


def _norm(v: dict, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", v[f"{src}/gamma"]
    yield f"{dst}.bias", v[f"{src}/beta"]


def _split(v: dict, src: str, dst: str, names: tuple[str, ...]) -> Iterator[tuple[str, np.ndarray]]:
    weights = np.split(v[f"{src}/weight"], len(names))
    biases = np.split(v[f"{src}/bias"], len(names))
    for name, w, b in zip(names, weights, biases):
        yield f"{dst}.{name}.weight", w
        if name != "key":  # whisper's key projection has no bias; CTranslate2 stored zeros
            yield f"{dst}.{name}.bias", b


def _block(v: dict, src: str, dst: str, *, cross: bool) -> Iterator[tuple[str, np.ndarray]]:
    yield from _split(v, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
    yield from _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    yield from _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    if cross:
        yield from _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        yield from _split(v, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"))
        yield from _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        yield from _norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
    yield from _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    yield from _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    yield from _norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")


def _state_dict(v: dict, dims: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    yield from _linear(v, "encoder/conv1", "encoder.conv1")
    yield from _linear(v, "encoder/conv2", "encoder.conv2")
    # whisper's fixed sinusoid table (`whisper.model.sinusoids`), as CTranslate2 stored
    # it: the copy faster-whisper runs with, so the two engines' transcripts match.
    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for i in range(dims["n_audio_layer"]):
        yield from _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    yield from _norm(v, "encoder/layer_norm", "encoder.ln_post")
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    for i in range(dims["n_text_layer"]):
        yield from _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    yield from _norm(v, "decoder/layer_norm", "decoder.ln")


def convert(model_dir: Path) -> dict[str, Any]:
    """A CTranslate2 Whisper directory → an openai-whisper checkpoint dict (float32 tensors)."""
    import torch

    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise EngineError(f"{model_dir} has no model.bin")
    v = read_ct2_variables(model_bin)
    dims = _dims(v)
    try:
        state = {
            name: torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            for name, arr in _state_dict(v, dims)
        }
    except KeyError as e:
        raise EngineError(f"model.bin has no {e.args[0]!r}; is this a Whisper model?") from None
    return {"dims": dims, "model_state_dict": state, "alignment_heads": _alignment_heads(model_dir)}


def _alignment_heads(model_dir: Path) -> list[list[int]]:
    config = model_dir / "config.json"
    if not config.is_file():
        return []
    try:
        heads = json.loads(config.read_text()).get("alignment_heads") or []
        return [[int(layer), int(head)] for layer, head in heads]
    except (ValueError, TypeError) as e:
        raise EngineError(f"{config} has unreadable alignment_heads: {e}") from None


# --- the on-disk cache ---------------------------------------------------------------


def checkpoint_path(model: "ModelInfo", cache_dir: Path) -> Path:
    """The converted `.pt` for a CTranslate2 model, converting it once if needed.

    Keyed by model.bin's resolved path, size and mtime (hashing gigabytes on every
    start would cost more than the load) plus `CONVERTER_VERSION`.
    """
    if model.kind != "ctranslate2":
        raise EngineError(f"model {model.name!r} is {model.kind}, not a CTranslate2 directory")
    model_bin = (model.path / "model.bin").resolve()
    try:
        st = model_bin.stat()
    except OSError as e:
        raise EngineError(f"cannot read {model_bin}: {e.strerror}") from None
    stamp = hashlib.sha256(
        f"{CONVERTER_VERSION}|{model_bin}|{st.st_size}|{st.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    target = cache_dir / "openai-whisper" / f"{model.name}-{stamp}.pt"
    if not target.is_file():
        _save_atomically(convert(model.path), target)
    return target


def _save_atomically(checkpoint: dict[str, Any], target: Path) -> None:
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write a temporary sibling and rename: a crash or a concurrent converter
    # never leaves (or reads) half a checkpoint.
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".pt", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- loading -------------------------------------------------------------------------


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        # weights_only: a checkpoint is data; never run pickled code from disk.
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise EngineError(f"cannot load checkpoint {path}: {e}") from None


def load_whisper_model(
    source: Path | dict[str, Any],
    device: str = "cpu",
    alignment_heads: list[list[int]] | None = None,
) -> "Whisper":
    """A checkpoint (path or dict) → an eval-mode `whisper.model.Whisper` on `device`.

    Alignment heads come from the checkpoint's `alignment_heads` key, else from the
    argument; without either, whisper's default (the last half of the layers).
    """
    import torch
    from whisper.model import ModelDimensions

    checkpoint = load_checkpoint(source) if isinstance(source, Path) else source
    try:
        dims = ModelDimensions(**checkpoint["dims"])
        model = _whisper_without_init(dims)
        # Official checkpoints are float16; whisper keeps float32 weights and casts
        # per layer. `assign` adopts the tensors instead of copying each one again.
        state = {
            k: t.float() if t.is_floating_point() else t
            for k, t in checkpoint["model_state_dict"].items()
        }
        model.load_state_dict(state, assign=True)
    except (KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise EngineError(f"not an openai-whisper checkpoint: {e}") from None
    # Buffers outside the state dict are still meta tensors: build them for real, as
    # whisper's constructors do (the causal mask; alignment heads default to the upper half).
    n_ctx = dims.n_text_ctx
    model.decoder.register_buffer(
        "mask", torch.empty(n_ctx, n_ctx).fill_(-float("inf")).triu_(1), persistent=False
    )
    heads = checkpoint.get("alignment_heads") or alignment_heads or [
        [layer, head] for layer in range(dims.n_text_layer // 2, dims.n_text_layer) for head in range(dims.n_text_head)
    ]
    model.register_buffer("alignment_heads", _heads_mask(heads, model), persistent=False)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise EngineError(f"checkpoint lacks {', '.join(leftover[:5])}")
    return model.to(device).eval()


def _whisper_without_init(dims: "ModelDimensions") -> "Whisper":
    """`Whisper(dims)` with its layers built on the meta device.

    Random initialisation of weights that the checkpoint replaces at once was most
    of a cold worker's start (0.46 of 0.47 s for tiny.en on one core). The two
    sub-modules are built as `Whisper.__init__` builds them; the checkpoint then
    supplies every tensor (`load_state_dict(assign=True)`).
    """
    import torch
    from torch import nn
    from whisper.model import AudioEncoder, TextDecoder, Whisper

    model = Whisper.__new__(Whisper)
    nn.Module.__init__(model)
    model.dims = dims
    with torch.device("meta"):
        model.encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state,
                                     dims.n_audio_head, dims.n_audio_layer)
        model.decoder = TextDecoder(dims.n_vocab, dims.n_text_ctx, dims.n_text_state,
                                    dims.n_text_head, dims.n_text_layer)
    return model


def _heads_mask(heads: list[list[int]], model: "Whisper") -> "torch.Tensor":
    import torch

    # The sparse boolean buffer whisper's `set_alignment_heads` builds from its
    # base85 dump, built here from [layer, head] pairs.
    mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        if not (0 <= layer < mask.shape[0] and 0 <= head < mask.shape[1]):
            raise EngineError(f"alignment head ({layer}, {head}) is outside the model")
        mask[layer, head] = True
    return mask.to_sparse()
