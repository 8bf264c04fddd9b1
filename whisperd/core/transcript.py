"""The result every engine returns and every program reads: Word, Segment, Transcript.

It carries exactly what OpenAI's `verbose_json` needs, so the renderers in
`whisperd.core.formats` never see an engine object. It is plain data
(`to_dict` / `from_dict`) because it crosses the socket and worker pipes.
Stdlib only: the shim and whisperctl import it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float = 0.0

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Word":
        return Word(str(d["word"]), float(d["start"]), float(d["end"]), float(d.get("probability") or 0.0))


@dataclass(frozen=True)
class TokenLogprob:
    """One text token as OpenAI's `include[]=logprobs` reports it: its text, its UTF-8
    bytes (a token may hold part of a character) and the model's log probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.bytes)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "TokenLogprob":
        return TokenLogprob(str(d["token"]), float(d["logprob"]), tuple(int(b) for b in d.get("bytes") or ()))


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: tuple[Word, ...] = ()
    # The text tokens' log probabilities, only when they were asked for (Options.logprobs).
    logprobs: tuple[TokenLogprob, ...] = ()

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Segment":
        # Keys this version does not know (a newer daemon's) are left out, not an error.
        known = {k: v for k, v in d.items() if k in _SEGMENT_FIELDS}
        known["tokens"] = tuple(d.get("tokens") or ())
        known["words"] = tuple(Word.from_dict(w) for w in d.get("words") or ())
        known["logprobs"] = tuple(TokenLogprob.from_dict(t) for t in d.get("logprobs") or ())
        return Segment(**known)


_SEGMENT_FIELDS = frozenset(f.name for f in fields(Segment))


def segment_dict(s: Segment) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text,
        "tokens": list(s.tokens), "temperature": s.temperature, "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob,
        "words": [{"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
                  for w in s.words],
    }
    if s.logprobs:  # only when asked: a segment without them is what older readers know
        d["logprobs"] = [t.to_dict() for t in s.logprobs]
    return d


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str  # ISO-639-1 code, e.g. "en"
    duration: float  # seconds of audio
    segments: tuple[Segment, ...] = ()
    task: str = "transcribe"

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    @property
    def logprobs(self) -> list[TokenLogprob]:
        return [t for s in self.segments for t in s.logprobs]

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies recursively (2-3 % of the
        # daemon's time per request at the framework's ceiling, profiled).
        return {
            "text": self.text,
            "language": self.language,
            "duration": self.duration,
            "task": self.task,
            "segments": [segment_dict(s) for s in self.segments],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Transcript":
        return Transcript(
            text=d["text"],
            language=d["language"],
            duration=float(d["duration"]),
            segments=tuple(Segment.from_dict(s) for s in d.get("segments") or ()),
            task=d.get("task", "transcribe"),
        )


def join_segment_text(segments: list[Segment] | tuple[Segment, ...]) -> str:
    return "".join(s.text for s in segments).strip()
