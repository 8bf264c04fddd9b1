"""Engines side by side: seconds, real-time factor, peak memory and word error rate.

tiny.en and multilingual base × {openai-whisper fp32, faster-whisper float32,
faster-whisper int8} × beam {1, 5} × {a 3.8 s clip (fox.wav), a 32 s clip (long.mp3)}.

Each (model, engine, compute type) runs in a fresh interpreter of its own: load,
one warm-up transcription, then N timed runs of every (beam, clip); its peak
RSS (ru_maxrss) is that process's whole life. Seconds are the engine's
`transcribe()` on decoded 16 kHz samples (decoding is the same for every engine
and is measured by bench/overhead.py). WER is against the clip's script
(tests/fixtures/*.txt) after bench/wer.py's normalizer, so speed is never bought
with wrong words. Options are the daemon's defaults (`daemon_options()`: its
configured beam, no-speech threshold, VAD and short-path settings; temperature
fallback; language detected on base, en on tiny.en), with the beam varied.

    .venv/bin/python bench/engines.py [--quick] [--runs N] [--no-write] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import (  # noqa: E402
    ROOT,
    git_rev,
    machine,
    median,
    progress,
    table,
    update_section,
)
from bench.wer import normalize, word_errors  # noqa: E402

if TYPE_CHECKING:
    from whisperd.engines.base import Options

FIXTURES = ROOT / "tests" / "fixtures"
CACHE = ROOT / ".cache"  # the same converted checkpoints the tests use (testing/stack.py)
MODELS = ("tiny.en", "base")
CLIPS = (("3 s", "fox.wav", "fox.txt"), ("30 s", "long.mp3", "long.txt"))
BEAMS = (1, 5)
# (engine, compute type) per device; the first one is the baseline the others are compared with.
CONFIGS = {
    "cpu": (("openai-whisper", "float32"), ("faster-whisper", "float32"), ("faster-whisper", "int8")),
    "cuda": (("openai-whisper", "float16"), ("faster-whisper", "float16"), ("faster-whisper", "int8_float16")),
}
# What the daemon does today with `--engine auto` on a CTranslate2 model and compute type auto
# (faster_whisper.pick_compute_type); the beam is the daemon's configured default.
CURRENT_DEFAULT = {"cpu": ("faster-whisper", "int8"), "cuda": ("faster-whisper", "float16")}
PLOT = ROOT / "docs" / "perf-engines.png"


# --- one configuration, in its own process ------------------------------------------------


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def daemon_options(**override: object) -> "Options":
    """The options the daemon gives a plain request (Server._options), from its settings' defaults."""
    import dataclasses

    from whisperd.core.settings import build
    from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig
    from whisperd.engines.base import Options

    config = build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {}, {}, "/dev/null")
    kw: dict[str, object] = {"beam_size": config.beam_size, "no_speech_threshold": config.no_speech_threshold,
                             "vad_filter": config.vad_filter}
    if "short_path" in {f.name for f in dataclasses.fields(Options)} and hasattr(config, "short_path"):
        kw["short_path"] = config.short_path == "on"
    return Options(**{**kw, **override})


def measure_one(model_name: str, engine_name: str, compute: str, device: str, runs: int) -> dict:
    from whisperd.daemon.audio import decode_audio
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine

    model = resolve_model(model_name, CACHE)
    clips = {clip: (decode_audio((FIXTURES / audio).read_bytes()), (FIXTURES / script).read_text().strip())
             for clip, audio, script in CLIPS}
    t0 = time.perf_counter()
    engine = load_engine(engine_name, model, device=device, compute_type=compute, cache_dir=str(CACHE))
    load_s = time.perf_counter() - t0
    rss_loaded = current_rss_mb()
    engine.transcribe(clips["3 s"][0], daemon_options(beam_size=1))  # warm-up: first-call allocations, caches
    results = []
    for beam in BEAMS:
        for clip, (pcm, script) in clips.items():
            seconds, text = [], ""
            for _ in range(runs):
                t = time.perf_counter()
                text = engine.transcribe(pcm, daemon_options(beam_size=beam)).text
                seconds.append(time.perf_counter() - t)
            results.append({"beam": beam, "clip": clip, "audio_s": len(pcm) / 16000, "seconds": seconds,
                            "text": text, "script": script})
            progress(f"{model_name} {engine_name} {compute} beam {beam} {clip}: {median(seconds):.2f} s")
    return {"model": model_name, "engine": engine_name, "compute": engine.compute_type, "device": device,
            "load_s": load_s, "rss_loaded_mb": rss_loaded,
            # Linux reports ru_maxrss in KiB.
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "runs": results}


def prepare(model_name: str) -> None:
    """Convert the CTranslate2 weights for openai-whisper now, so no measured process pays for it."""
    from whisperd.daemon.models import resolve_model
    from whisperd.engines.openai import convert

    model = resolve_model(model_name, CACHE)
    if model.kind == "ctranslate2":
        convert.checkpoint_path(model, CACHE)


def run_child(args: list[str]) -> str:
    # stderr passes through: the child's progress lines show while it runs.
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/engines.py {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.stdout


# --- the table and the choice ---------------------------------------------------------------


def label(engine: str, compute: str) -> str:
    return f"{engine} {compute}"


def rows_by_key(results: list[dict]) -> dict[tuple, dict]:
    """(model, engine, compute, beam, clip) → {seconds, rtf, errors, words, text, ...}."""
    out = {}
    for r in results:
        for run in r["runs"]:
            errors, words = word_errors(run["script"], run["text"])
            secs = median(run["seconds"])
            out[(r["model"], r["engine"], r["compute"], run["beam"], run["clip"])] = {
                "seconds": secs, "rtf": secs / run["audio_s"], "errors": errors, "words": words,
                "text": run["text"], "peak_rss_mb": r["peak_rss_mb"], "load_s": r["load_s"],
            }
    return out


def hyp_diff(a: str, b: str) -> int:
    """Word edits between two transcripts: 0 means the same words."""
    from bench.wer import edit_distance

    return edit_distance(normalize(a), normalize(b))


def build_table(data: dict[tuple, dict], configs, baseline: tuple[str, str]) -> tuple[list[str], list[list]]:
    headers = ["model", "engine", "compute", "beam",
               "3 s: seconds", "3 s: RTF", "3 s: WER %",
               "30 s: seconds", "30 s: RTF", "30 s: WER %",
               "30 s: × vs baseline", "30 s: words ≠ baseline", "peak RSS MiB", "load s"]
    rows = []
    for model in MODELS:
        for engine, compute in configs:
            for beam in BEAMS:
                short = data.get((model, engine, compute, beam, "3 s"))
                long = data.get((model, engine, compute, beam, "30 s"))
                base_long = data.get((model, *baseline, beam, "30 s"))
                if short is None or long is None:
                    continue
                speedup = base_long["seconds"] / long["seconds"] if base_long else float("nan")
                rows.append([model, engine, compute, beam,
                             short["seconds"], short["rtf"], 100 * short["errors"] / short["words"],
                             long["seconds"], long["rtf"], 100 * long["errors"] / long["words"],
                             f"{speedup:.2f}×", hyp_diff(base_long["text"], long["text"]) if base_long else "?",
                             round(long["peak_rss_mb"]), long["load_s"]])
    return headers, rows


def choose(data: dict[tuple, dict], configs, baseline: tuple[str, str]) -> tuple[tuple[str, str, int], str]:
    """The fastest (engine, compute, beam) on 30 s of tiny.en (the default model) whose word
    errors are no more than the baseline's at beam 5 on every clip and model."""
    def errors(model, engine, compute, beam, clip):
        return data[(model, engine, compute, beam, clip)]["errors"]

    candidates = []
    for engine, compute in configs:
        for beam in BEAMS:
            if not all((m, engine, compute, beam, c) in data for m in MODELS for c, _, _ in CLIPS):
                continue
            ok = all(errors(m, engine, compute, beam, c) <= errors(m, *baseline, 5, c)
                     for m in MODELS for c, _, _ in CLIPS)
            if ok:
                candidates.append((data[("tiny.en", engine, compute, beam, "30 s")]["seconds"], engine, compute, beam))
    if not candidates:
        return (*baseline, 5), "no configuration matched the baseline's words; keeping the baseline"
    _, engine, compute, beam = min(candidates)
    return (engine, compute, beam), f"{len(candidates)} configurations match the baseline's words"


def current_default(device: str) -> tuple[str, str, int]:
    return (*CURRENT_DEFAULT[device], daemon_options().beam_size)


def verdict(data: dict[tuple, dict], device: str, baseline: tuple[str, str]) -> list[str]:
    lines = []
    engine, compute, beam = current_default(device)
    for model in MODELS:
        d = data.get((model, engine, compute, beam, "30 s"))
        b = data.get((model, *baseline, 5, "30 s"))
        if d is None or b is None:
            continue
        speedup = b["seconds"] / d["seconds"]
        same = hyp_diff(b["text"], d["text"])
        words_ok = d["errors"] <= b["errors"]
        met = speedup >= 4 and words_ok
        lines.append(
            f"- {model}, 30 s: {label(engine, compute)} beam {beam} takes {d['seconds']:.2f} s against "
            f"{b['seconds']:.2f} s for {label(*baseline)} beam 5: **{speedup:.1f}×**; word errors "
            f"{d['errors']} vs {b['errors']} of {d['words']} ({same} words differ between the two transcripts). "
            f"Goal ≥ 4× with the same words: **{'met' if met else 'not met'}**."
        )
    return lines


def plot(data: dict[tuple, dict], configs, path: Path, device: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib is not installed: no plot (pip install -r requirements/bench.txt)")
        return False
    fig, axes = plt.subplots(1, len(MODELS), figsize=(11, 4.2), sharey=False)
    width = 0.38
    for ax, model in zip(axes, MODELS):
        names = [label(e, c).replace(" ", "\n", 1) for e, c in configs]
        for i, beam in enumerate(BEAMS):
            xs = [j + (i - 0.5) * width for j in range(len(configs))]
            ys = [data.get((model, e, c, beam, "30 s"), {}).get("seconds", 0.0) for e, c in configs]
            bars = ax.bar(xs, ys, width, label=f"beam {beam}")
            for bar, (e, c) in zip(bars, configs):
                d = data.get((model, e, c, beam, "30 s"))
                if d:
                    ax.annotate(f"WER {100 * d['errors'] / d['words']:.0f}%",
                                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(configs)), names, fontsize=8)
        ax.set_title(f"{model}: 32 s of speech on {device}")
        ax.set_ylabel("seconds (median)")
        ax.legend(fontsize=8)
    fig.suptitle("Whisper engines: time to transcribe (lower is better); WER above each bar", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timed run per cell (default 3)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per cell (median reported)")
    parser.add_argument("--device", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--models", default=",".join(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "ENGINE", "COMPUTE"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    if args.prepare:
        prepare(args.prepare)
        return 0
    if args.one:
        print(json.dumps(measure_one(*args.one, device=args.device, runs=runs)))
        return 0

    configs = CONFIGS[args.device]
    baseline = configs[0]
    models = [m for m in args.models.split(",") if m]
    print(f"machine: {machine()}")
    started = time.monotonic()
    results = []
    for model in models:
        progress(f"{model}: converting for openai-whisper if not cached")
        run_child(["--prepare", model])
        for engine, compute in configs:
            progress(f"{model} / {label(engine, compute)}: fresh process, {runs} run(s) per cell")
            out = run_child(["--one", model, engine, compute, "--runs", str(runs), "--device", args.device])
            results.append(json.loads(out.strip().splitlines()[-1]))
    data = rows_by_key(results)
    # Rows are keyed by the compute type the engine reports (e.g. openai-whisper "auto" → float32).
    headers, rows = build_table(data, configs, baseline)
    engine_table = table(headers, rows)
    print(engine_table)
    choice, why = choose(data, configs, baseline)
    current = current_default(args.device)
    keep = choice == current
    goal_lines = verdict(data, args.device, baseline)
    recommendation = (
        f"Recommended default on {args.device}, by these numbers: **{label(*choice[:2])}, beam {choice[2]}** "
        f"(the fastest on 30 s of tiny.en among configurations with no more word errors than "
        f"{label(*baseline)} beam 5 on every clip and model; {why}). "
        + ("This is the current default: keep it." if keep else
           f"The current default is {label(*current[:2])}, beam {current[2]}; "
           + ("the only difference is the beam: beam 1 matched the words on these two clean clips, but beam 5 "
              "is whisper's own default and the safer choice on noisy or accented speech, so the beam change "
              "is a judgement call, not something two clips can prove." if choice[:2] == current[:2] else
              "change it.")))
    print(recommendation)
    for line in goal_lines:
        print(line)
    print(f"took {time.monotonic() - started:.0f} s")

    plot_path = PLOT if args.device == "cpu" else PLOT.with_name(f"perf-engines-{args.device}.png")
    wrote_plot = plot(data, configs, plot_path, args.device)
    texts = "\n".join(f"- {m}, {label(e, c)}, beam {b}, {clip}: “{d['text']}”"
                      for (m, e, c, b, clip), d in sorted(data.items()) if clip == "3 s" and b == 5)
    body = f"""## Engines ({args.device})

`bench/engines.py{' --quick' if args.quick else ''}` (commit {git_rev()}), {runs} timed run(s) per cell, median.
Machine: {machine()}.

Each (model, engine, compute type) ran in a fresh process: load, one warm-up, then the timed runs.
Seconds are `Engine.transcribe()` on decoded 16 kHz samples; RTF = seconds ÷ audio seconds
(3 s clip = fox.wav, 3.8 s; 30 s clip = long.mp3, 32 s). WER is against the clip's script after
`bench/wer.py`'s normalizer (lowercase, no punctuation, numbers as written). "× vs baseline" and
"words ≠ baseline" compare with {label(*baseline)} at the same beam on the 30 s clip (word edits between
the two transcripts; 0 = the same words). Peak RSS is the process's ru_maxrss over all its runs.

{engine_table}

{recommendation}

{chr(10).join(goal_lines)}

{f'![engines]({plot_path.name})' if wrote_plot else ''}

<details><summary>3 s clip transcripts at beam 5</summary>

{texts}

</details>
"""
    if not args.no_write:
        update_section("engines" if args.device == "cpu" else f"engines-{args.device}", body)
        print("written to docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
