"""One error base with stable codes.

Errors cross the socket as data (`to_wire` / `from_wire`); the shim maps each
code to an HTTP status and OpenAI's error body in one table (`shim/errors.py`).
A code, once published, never changes meaning.
"""

from __future__ import annotations

from typing import Any


class WhisperdError(Exception):
    """Base of every error whisperd reports to a client."""

    code = "internal_error"
    # Which request parameter is at fault, when one is (OpenAI's `param`).
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param}

    @staticmethod
    def from_wire(data: dict[str, Any]) -> "WhisperdError":
        code = str(data.get("code") or "internal_error")
        cls = ERRORS_BY_CODE.get(code, WhisperdError)
        err = cls(str(data.get("message") or code), param=data.get("param"))
        err.code = code  # keep unknown codes from newer daemons as they are
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


# --- the client's request is wrong -------------------------------------------------


class InvalidParameter(WhisperdError):
    code = "invalid_parameter"


class ModelNotFound(WhisperdError):
    code = "model_not_found"
    param = "model"


class UnsupportedForModel(WhisperdError):
    """The model cannot do what was asked (translate or a non-English language on `.en`)."""

    code = "unsupported_for_model"


# --- models on disk (`whisperctl models pull / remove`, on the client's side) -----------


class ModelFetchFailed(WhisperdError):
    """The hub (or the mirror HF_ENDPOINT names) could not give us the model."""

    code = "model_fetch_failed"


class ChecksumMismatch(ModelFetchFailed):
    """A downloaded file is not what the hub's checksum says: nothing was installed."""

    code = "checksum_mismatch"


class ModelInstallRefused(WhisperdError):
    """Installing or removing would break something (a bundled model, a name in use, a bad name)."""

    code = "model_install_refused"


# --- audio ---------------------------------------------------------------------------


class AudioDecodeError(WhisperdError):
    code = "audio_decode_failed"
    param = "file"


class AudioEmpty(WhisperdError):
    code = "audio_empty"
    param = "file"


class AudioTooLong(WhisperdError):
    code = "audio_too_long"
    param = "file"


class AudioTooLarge(WhisperdError):
    code = "audio_too_large"
    param = "file"


# --- the wire ------------------------------------------------------------------------


class ProtocolError(WhisperdError):
    code = "protocol_error"


class FrameTooLarge(ProtocolError):
    code = "frame_too_large"


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class UnknownOp(ProtocolError):
    code = "unknown_op"


class FrameTimeout(ProtocolError):
    """A frame was begun but not finished in time (a stalled or trickling client)."""

    code = "frame_timeout"


# --- our side ------------------------------------------------------------------------


class NotReady(WhisperdError):
    code = "not_ready"


class Overloaded(WhisperdError):
    code = "overloaded"


class ShuttingDown(WhisperdError):
    code = "shutting_down"


class WorkerFailed(WhisperdError):
    code = "worker_failed"


class WorkerTimeout(WorkerFailed):
    """A cold worker ran past its deadline and was killed (never retried)."""

    code = "worker_timeout"


class JobCancelled(WhisperdError):
    """The client went away; its work was dropped (never sent to anyone)."""

    code = "cancelled"


class EngineError(WhisperdError):
    code = "engine_error"


class ConfigError(WhisperdError):
    code = "config_error"


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[WhisperdError]] = {
    c.code: c for c in [WhisperdError, *_all_subclasses(WhisperdError)]
}
