"""`whisperctl models list | pull | remove`: the models folder, for an administrator.

    whisperctl models                       the models the daemon serves, one per line (as ever)
    whisperctl models list [--json]         installed models: size, languages, source, where loaded
    whisperctl models pull NAME [--repo ORG/NAME] [--revision REV] [--force] [--progress|--no-progress]
    whisperctl models pull --list           the names pull knows, and their repositories
    whisperctl models remove NAME [--force]

`pull` and `remove` change `models_dir` (`--models-dir`, $WHISPERD_MODELS_DIR, `[whisperctl]`
or `[whisperd]` models_dir, else /var/lib/whisperd/models under the package), then ask the
daemon to rescan over its socket, so it serves (or stops serving) the model with no restart.
Only `pull` goes online, and only this process: the daemon never does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

from whisperd.client import Client
from whisperd.client import installed
from whisperd.client.installed import LocalModel
from whisperd.client.progress import add_progress_flags
from whisperd.client.pull import human_size
from whisperd.core.errors import ModelInstallRefused, NotReady, WhisperdError
from whisperd.core.model_names import BUNDLED, HUB_REPOS, NAME_ALIASES
from whisperd.core.replies import DaemonStatus, ModelEntry

LIVE_LANE_STATES = ("loading", "idle", "busy")


def _say(line: str) -> None:
    print(f"whisperctl: {line}", file=sys.stderr, flush=True)


def add_commands(models: argparse.ArgumentParser, epilog: str) -> None:
    """`list`, `pull` and `remove` under `whisperctl models` (which alone still lists the served ones)."""
    fmt = argparse.RawDescriptionHelpFormatter
    sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="installed models: size, languages, source, where loaded", epilog=epilog,
                        formatter_class=fmt)
    ls.add_argument("--json", action="store_true", help="print the rows as JSON")
    ls.set_defaults(func=cmd_list)

    pull = sub.add_parser("pull", help="fetch a model from the Hugging Face hub (or HF_ENDPOINT's mirror), "
                          "verify it and install it", epilog=epilog, formatter_class=fmt)
    pull.add_argument("name", metavar="NAME", nargs="?", help="e.g. small, large-v3-turbo, distil-large-v3")
    pull.add_argument("--list", dest="list_names", action="store_true", help="the names pull knows")
    pull.add_argument("--repo", metavar="ORG/NAME", help="another CTranslate2 Whisper repository, installed as NAME")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main)")
    pull.add_argument("--force", action="store_true", help="fetch again and replace an installed NAME")
    add_progress_flags(pull, forced="progress bars on stderr even when it is not a terminal",
                       never="no progress bars")
    pull.set_defaults(func=cmd_pull, parser=pull)

    rm = sub.add_parser("remove", help="remove a model from the models folder", epilog=epilog, formatter_class=fmt)
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--force", action="store_true", help="even the daemon's default model")
    rm.set_defaults(func=cmd_remove)


# --- what the daemon says -------------------------------------------------------------------


def _daemon_view(args: argparse.Namespace) -> tuple[list[ModelEntry], DaemonStatus] | None:
    """The daemon's models and status, or None when it is not running."""
    try:
        with Client(args.socket, timeout=args.timeout or 30) as c:
            return c.models(), c.status()
    except NotReady:
        return None


def _tell_daemon(args: argparse.Namespace, name: str, *, served: bool) -> None:
    """Ask the daemon to rescan; say whether it now serves (or no longer serves) `name`."""
    try:
        with Client(args.socket, timeout=args.timeout or 30) as c:
            result = c.rescan()
    except NotReady:
        _say(f"whisperd is not running on {args.socket}: it reads the models folder when it starts")
        return
    except WhisperdError as err:  # e.g. unknown_op from a daemon older than rescan
        _say(f"whisperd did not rescan ({err.message}); restart it to see the change")
        return
    ours = Path(args.models_dir).resolve()
    if result.models_dir and Path(result.models_dir).resolve() != ours:
        _say(f"warning: whisperd reads models from {result.models_dir}, not {ours}: pass --models-dir "
             f"{result.models_dir} (or set models_dir in the config file)")
    now = {m.id for m in result.models}
    if served and name in now:
        _say(f"whisperd serves {name} now (no restart)")
    elif served:
        _say(f"warning: whisperd found {name} but does not serve it (extra_models, or max_cold_workers = 0)")
    elif name in now:
        _say(f"whisperd still serves a model named {name} (from another source)")
    else:
        _say(f"whisperd no longer serves {name}")


# --- list -----------------------------------------------------------------------------------


def model_rows(local: Iterable[LocalModel], served: Iterable[ModelEntry] | None,
               status: DaemonStatus | None) -> list[dict[str, Any]]:
    """One row per model: the daemon's view where it runs, the folder's for what it does not serve."""
    where: dict[str, list[str]] = {}
    for lane in status.lanes if status else ():
        if lane.state in LIVE_LANE_STATES:
            where.setdefault(lane.model, []).append(lane.id)
    on_disk = {m.name: m for m in local}
    rows = []
    for entry in served or ():
        disk = on_disk.pop(entry.id, None)
        rows.append({"name": entry.id, "size_bytes": entry.size_bytes if disk is None else disk.size,
                     "multilingual": entry.multilingual, "source": entry.source or "?",
                     "repo": disk.repo if disk else "", "revision": disk.revision if disk else "",
                     "served": True, "default": entry.default, "loaded": where.get(entry.id, [])})
    for disk in on_disk.values():
        rows.append({"name": disk.name, "size_bytes": disk.size, "multilingual": disk.multilingual,
                     "source": "models_dir", "repo": disk.repo, "revision": disk.revision,
                     "served": False if served is not None else None, "default": False, "loaded": []})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    table = [("NAME", "SIZE", "LANGUAGES", "SOURCE", "LOADED")]
    for r in rows:
        source = r["source"] + (f" {r['repo']}@{r['revision'][:8]}" if r["repo"] else "")
        if r["served"] is None:
            loaded = "?"
        elif not r["served"]:
            loaded = "not served"
        else:
            loaded = ", ".join(r["loaded"]) or "-"
        if r["default"]:
            loaded += " (default)"
        size = human_size(r["size_bytes"]) if r["size_bytes"] is not None else "?"
        table.append((r["name"], size, "multilingual" if r["multilingual"] else "English", source, loaded))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]
                     for row in table)


def cmd_list(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir)
    view = _daemon_view(args)
    served, status = view if view else (None, None)
    rows = model_rows(installed.local_models(models_dir), served, status)
    if view is None:
        _say(f"whisperd is not running on {args.socket}: only {models_dir} is shown")
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows), flush=True)
    return 0


# --- pull -----------------------------------------------------------------------------------


def cmd_pull(args: argparse.Namespace) -> int:
    from whisperd.client.pull import pull

    if args.list_names:
        aliases = {target: alias for alias, target in NAME_ALIASES.items()}
        for name, repo in HUB_REPOS.items():
            also = f" (also: {aliases[name]})" if name in aliases else ""
            print(f"{name:<18} {repo}{also}")
        return 0
    if not args.name:
        args.parser.error("NAME is required (or --list)")
    models_dir = Path(args.models_dir)
    done = pull(args.name, models_dir, repo=args.repo, revision=args.revision, force=args.force,
                progress=args.progress, say=_say)
    if done.already:
        print(f"{done.name} is installed already in {done.path} (--force fetches it again)", flush=True)
    else:
        verb = "replaced" if done.replaced else "installed"
        print(f"{verb} {done.name} ({human_size(done.size)}, {done.repo}@{done.revision[:12]}) in {done.path}",
              flush=True)
    _tell_daemon(args, done.name, served=True)
    return 0


# --- remove ---------------------------------------------------------------------------------


def cmd_remove(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir)
    name = args.name
    path = installed.installed_path(models_dir, name)
    view = _daemon_view(args)
    entry = next((m for m in view[0] if m.id == name), None) if view else None
    if path is None:
        if (entry is not None and entry.source == "bundled") or (entry is None and name in BUNDLED):
            raise ModelInstallRefused(f"{name} is bundled with whisperd (a Python package of its install) and "
                                      "cannot be removed; a model of that name in the models folder would take "
                                      "its place")
        if entry is not None and entry.source == "hf_cache":
            raise ModelInstallRefused(f"{name} is served from the Hugging Face cache (hf_cache_dir), which whisperd "
                                      "only reads: delete it there (huggingface_hub's cache tools), then rescan")
        raise ModelInstallRefused(f"{name} is not installed in {models_dir}")
    if view is not None and view[1].model == name and not args.force:
        raise ModelInstallRefused(f"{name} is the daemon's default model: it would not start again without it; "
                                  "set another model first, or pass --force")
    try:
        installed.remove(path)
    except OSError as exc:
        raise ModelInstallRefused(f"cannot remove {path}: {exc.strerror or exc}") from None
    print(f"removed {name} from {models_dir}", flush=True)
    _tell_daemon(args, name, served=False)
    return 0
