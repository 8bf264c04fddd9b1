"""`whisperctl`: talk to a running whisperd over its Unix socket. Never loads a model.

    whisperctl [--socket PATH] [--timeout S] status [--json]
    whisperctl [--socket PATH] [--timeout S] models [--json]
    whisperctl [--models-dir DIR] models list|pull NAME|remove NAME   (whisperd/client/models_cli.py)
    whisperctl [--socket PATH] [--timeout S] transcribe FILE|- [--format FMT] [--language LANG]
               [--prompt P] [--temperature T] [--model M] [--translate] [--words]
               [--chunking auto|JSON] [--logprobs] [--output PATH] [--progress | --no-progress]
    whisperctl [--socket PATH] listen [FILE|-] [--pace] [--language LANG] [--model M] [--no-vad] [--json]

Settings come from flags > `WHISPERD_*` environment > `/etc/whisperd/whisperd.conf`
(`[whisperctl]`, or `--config FILE` / $WHISPERD_CONFIG) > defaults, like the daemon's
and the shim's (`whisperctl --print-config` shows them). The socket is `--socket`, else
$WHISPERD_SOCKET, else `socket` in `[whisperctl]`, else `socket` in `[whisperd]` (where
the daemon listens), else /run/whisperd/whisperd.sock.
Output is rendered by `whisperd.core.formats`, so a file written here is byte-for-byte
what the HTTP API answers for the same `response_format`. The progress bar goes to
stderr (only when stderr is a terminal, unless forced), never to stdout.

Exit codes:
    0    ok
    1    the daemon answered with an error (or timed out); stderr has
         `whisperctl: error: <message> (<code>)`
    2    usage error, or a bad setting (flag, environment, config file)
    3    daemon not reachable: not running, socket missing, permission denied
         (or shutting down, or `status` found it not ready)
    4    FILE unreadable (or --output not writable)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import stat
import sys
from typing import Callable

from whisperd.client import Client, models_cli
from whisperd.client.config import CTL_SETTINGS, ctl_config
from whisperd.client.progress import ProgressBar, add_progress_flags
from whisperd.core import chunking as chunking_rules
from whisperd.core.chunking import Chunking
from whisperd.core.errors import ConfigError, InvalidParameter, NotReady, WhisperdError
from whisperd.core.formats import RESPONSE_FORMATS, render
from whisperd.core.replies import DaemonStatus
from whisperd.core.settings import add_arguments, add_config_arguments, describe

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_FILE = 4
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0    ok
  1    the daemon answered with an error: 'whisperctl: error: <message> (<code>)'
  2    usage error, or a bad setting (flag, environment, config file)
  3    daemon not reachable (not running, socket missing, permission denied) or not ready
  4    FILE unreadable, or --output not writable
  130  interrupted (Ctrl-C)

The system socket is mode 0660, group 'whisperd': add yourself with
'sudo usermod -aG whisperd $USER' and log in again."""


class StdoutClosed(Exception):
    """stdout's reader went away (`whisperctl ... | head`)."""


class Failure(Exception):
    """A failure on our side of the socket, with the exit code it maps to."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


def _progress_bar(mode: bool | None) -> ProgressBar | None:
    """None (no progress frames asked for), or a bar. `mode`: True forced, False off, None auto."""
    if mode is False:
        return None
    tty = sys.stderr.isatty()
    if mode is None and not tty:
        return None
    return ProgressBar(sys.stderr, redraw=tty, delay=0.0 if mode else 1.0)


# --- input and output -------------------------------------------------------------------


def _read_input(path: str) -> bytes:
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise Failure(EXIT_FILE, "refusing to read audio from a terminal; pipe a file into '-'")
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Failure(EXIT_FILE, f"cannot read {path}: {exc.strerror or exc}") from None


def _check_writable(path: str) -> None:
    """Fail before a long transcription, not after it."""
    if os.path.isdir(path):
        raise Failure(EXIT_FILE, f"cannot write {path}: it is a directory")
    target = path if os.path.exists(path) else (os.path.dirname(os.path.abspath(path)))
    if not os.access(target, os.W_OK):
        raise Failure(EXIT_FILE, f"cannot write {path}: permission denied or no such directory")


def _write_output(body: str, path: str | None) -> None:
    data = body.encode("utf-8")  # subtitle and JSON files are UTF-8 whatever the locale says
    if path is None or path == "-":
        if not body.endswith("\n"):  # json bodies have none; a terminal line wants one
            body, data = body + "\n", data + b"\n"
        out = sys.stdout
        buffer = getattr(out, "buffer", None)
        try:
            out.flush()
            if buffer is None:  # a replaced sys.stdout without bytes underneath
                out.write(body)
                out.flush()
            else:
                buffer.write(data)
                buffer.flush()
        except BrokenPipeError:
            raise StdoutClosed from None
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise Failure(EXIT_FILE, f"cannot write {path}: {exc.strerror or exc}") from None


def _print(text: str) -> None:
    _write_output(text + "\n", None)


# --- commands ---------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def format_status(status: DaemonStatus, socket_path: str) -> str:
    """A person's summary; the whole object is `--json`'s."""
    lines = [f"whisperd {status.version or '?'}: {status.status or '?'}",
             f"  socket    {socket_path}"]
    engine = [v for v in (status.engine, status.device, status.compute_type) if v]
    lines.append(f"  model     {status.model or '?'}" + (f" ({', '.join(engine)})" if engine else ""))
    if status.workers:
        slots = status.hot_slots
        lines.append("  workers   " + ", ".join(f"{v} {k}" for k, v in status.workers.items())
                     + (f" (the hot one with {slots} slots)" if slots > 1 else ""))
    for lane in status.lanes:  # one line per worker: what it holds, what it does
        pid = f"  pid {lane.pid}" if lane.pid else ""
        lines.append(f"    {lane.id:<9} {lane.model:<10} {lane.state:<8} {lane.served} served{pid}")
    lines.append(f"  requests  {status.running} running, {status.queue} waiting, {status.served} served")
    lines.append(f"  workers   {status.loading} loading, {status.spawns} cold spawns, {status.crashes} crashes")
    events = [f"{count} {name.replace('_', ' ')}" for name, count in sorted(status.counters.items()) if count]
    if events:
        lines.append("  events    " + ", ".join(events))
    lines.append(f"  uptime    {_duration(status.uptime)}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    with Client(args.socket, timeout=args.timeout) as c:
        status = c.status()
    _print(json.dumps(status.to_dict(), indent=2) if args.json else format_status(status, args.socket))
    # A health check in a script: anything but "ready" is not ready.
    return EXIT_OK if status.ready else EXIT_UNREACHABLE


def cmd_models(args: argparse.Namespace) -> int:
    with Client(args.socket, timeout=args.timeout) as c:
        models = c.models()
    if args.json:
        _print(json.dumps([m.to_dict() for m in models], indent=2))
    else:
        for model in models:
            _print(model.id)
    return EXIT_OK


def cmd_transcribe(args: argparse.Namespace) -> int:
    audio = _read_input(args.file)
    if args.output not in (None, "-"):
        _check_writable(args.output)
    bar = _progress_bar(args.progress)
    with Client(args.socket, timeout=args.timeout) as c:
        if bar is not None:
            bar.start()
        try:
            # Segment frames tell the bar how many seconds are done, not just what share.
            result = c.transcribe(
                audio, model=args.model, language=args.language, prompt=args.prompt,
                temperature=args.temperature, word_timestamps=args.words,
                task="translate" if args.translate else "transcribe",
                chunking=args.chunking, logprobs=args.logprobs,
                progress=bar is not None, segments=bar is not None, on_frame=bar.on_frame if bar else None,
            )
        except BaseException:
            if bar is not None:
                bar.close()  # end the bar's line, so the error reads cleanly
            raise
    if bar is not None:
        bar.finish(result.transcript.duration)
    body, _ = render(result.transcript, args.format, words=args.words, logprobs=args.logprobs)
    _write_output(body, args.output)
    return EXIT_OK


# --- parser and main --------------------------------------------------------------------


def _temperature(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _chunking(text: str) -> Chunking:
    try:
        return chunking_rules.from_openai(text, param="--chunking")
    except InvalidParameter as err:
        raise argparse.ArgumentTypeError(err.message) from None


def build_parser() -> argparse.ArgumentParser:
    from whisperd import __version__

    parser = argparse.ArgumentParser(
        prog="whisperctl",
        description="Talk to a running whisperd over its Unix socket.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser, CTL_SETTINGS)  # --socket, --timeout: resolved by ctl_config()
    add_config_arguments(parser)
    parser.add_argument("--version", action="version", version=f"whisperctl {__version__}")
    # Not required by argparse: `whisperctl --print-config` needs no command (main() checks).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    status = sub.add_parser("status", help="the daemon's state, model and load", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--json", action="store_true", help="print the raw status object")
    status.set_defaults(func=cmd_status)

    models = sub.add_parser("models", help="the models the daemon serves, one per line", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    models.add_argument("--json", action="store_true", help="print the raw model list")
    models.set_defaults(func=cmd_models)
    models_cli.add_commands(models, EPILOG)

    tr = sub.add_parser("transcribe", help="transcribe an audio file ('-' for stdin)", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("file", metavar="FILE", help="audio file (any format ffmpeg reads), or '-' for stdin")
    tr.add_argument("--format", "-f", choices=RESPONSE_FORMATS, default="text",
                    help="output format, as OpenAI's response_format (default: text)")
    tr.add_argument("--language", "-l", help="spoken language, e.g. en (default: detect)")
    tr.add_argument("--prompt", help="text to steer spelling and style")
    tr.add_argument("--temperature", type=_temperature, default=None,
                    help="sampling temperature 0..1 (default 0: greedy with fallback)")
    tr.add_argument("--model", "-m", help="model to use (default: the daemon's)")
    tr.add_argument("--translate", action="store_true", help="translate into English")
    tr.add_argument("--words", action="store_true", help="word timestamps (verbose_json only)")
    tr.add_argument("--chunking", type=_chunking, default=None, metavar="auto|JSON",
                    help="how a long file is cut into windows, as OpenAI's chunking_strategy: 'auto' or "
                         '\'{"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 200, '
                         '"prefix_padding_ms": 300}\' (default: the daemon\'s)')
    tr.add_argument("--logprobs", action="store_true",
                    help="add each token's log probability (json only, as OpenAI's include[]=logprobs)")
    tr.add_argument("--output", "-o", metavar="PATH", help="write here instead of stdout")
    add_progress_flags(tr, forced="show a progress bar on stderr even when it is not a terminal",
                       never="never show a progress bar")
    tr.set_defaults(func=cmd_transcribe, parser=tr)

    from whisperd.client import listen

    listen.add_parser(sub).set_defaults(func=listen.cmd_listen)
    return parser


def _unreachable(path: str, err: WhisperdError) -> str:
    """Say why the socket cannot be used: missing, not a socket, or a permission problem."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (f"no socket at {path}: whisperd is not running there "
                "(systemctl status whisperd), or set --socket / WHISPERD_SOCKET")
    except PermissionError:
        return (f"permission denied reaching {path}: its directory is closed to this user; "
                "add yourself to the 'whisperd' group (sudo usermod -aG whisperd $USER, then log in again)")
    except OSError:
        return err.message
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} is not a socket"
    if not os.access(path, os.R_OK | os.W_OK):
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return (f"permission denied on {path}: add yourself to its group '{group}' "
                f"(sudo usermod -aG {group} $USER, then log in again)")
    return err.message  # the daemon itself said not_ready, or refused the connection


def _error(message: str, code: str | None = None) -> None:
    suffix = f" ({code})" if code else ""
    print(f"whisperctl: error: {message}{suffix}", file=sys.stderr, flush=True)


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except Failure as exc:
        _error(exc.message)
        return exc.exit_code
    except NotReady as err:
        _error(_unreachable(args.socket, err), err.code)
        return EXIT_UNREACHABLE
    except WhisperdError as err:
        _error(err.message, err.code)
        # A daemon on its way down is as good as unreachable: a script may retry later.
        return EXIT_UNREACHABLE if err.code == "shutting_down" else EXIT_ERROR
    except TimeoutError:
        _error(f"no answer from whisperd within {args.timeout:g} s", "timeout")
        return EXIT_ERROR
    except ConnectionError as exc:
        _error(f"lost the connection to whisperd: {exc.strerror or exc}", "not_ready")
        return EXIT_UNREACHABLE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None and not args.print_config:
            parser.error("the following arguments are required: COMMAND")
        if args.command == "transcribe" and args.words and args.format != "verbose_json":
            args.parser.error("--words needs --format verbose_json (the only format with word timings)")
        if args.command == "transcribe" and args.logprobs and args.format != "json":
            args.parser.error("--logprobs needs --format json (as OpenAI's include[]=logprobs)")
    except SystemExit as exc:  # argparse: usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        config = ctl_config(vars(args), args.config, os.environ)
    except ConfigError as err:
        _error(err.message)
        return EXIT_USAGE
    # The commands read the resolved values where the flags used to put them.
    args.socket, args.timeout, args.models_dir = config.socket, config.timeout, str(config.models_path)
    try:
        if args.print_config:
            _print(describe(config, CTL_SETTINGS))
            return EXIT_OK
        return _run(args.func, args)
    except KeyboardInterrupt:
        print("whisperctl: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except StdoutClosed:
        # Stop quietly, and keep Python's exit-time flush from complaining about the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
