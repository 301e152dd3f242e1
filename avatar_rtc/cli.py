"""`avatar-rtc` command line: serve, replay, backup, restore, config-docs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from avatar_rtc import settings as settings_mod
from avatar_rtc.logs import setup_logging
from avatar_rtc.settings.reference import DOC_PATH, render

log = logging.getLogger("avatar_rtc")


def _serve(args: argparse.Namespace) -> int:
    from avatar_rtc.app import create_app
    from avatar_rtc.drain import serve
    from avatar_rtc.storage import StorageError
    from avatar_rtc.tls import ssl_context

    settings = settings_mod.load(args)
    tls = ssl_context(settings.server)  # an unreadable file stops it here, before anything
    setup_logging(settings.log.level, settings.log.json)
    # Hub libraries must never reach out on their own: only configured URLs are used.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app = create_app(settings)
    host, port = settings.server.host, settings.server.port
    scheme = "https" if tls else "http"
    print(f"avatar_rtc: {scheme}://{host}:{port}/ (models load in the background; "
          f"GET /health says when ready)", flush=True)
    try:
        asyncio.run(serve(app, host, port, settings.server.drain_timeout_s, ssl_context=tls))
    except StorageError as exc:  # the database cannot be opened: say why, no traceback
        print(f"avatar-rtc serve: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from avatar_rtc.replay.cli import main as replay_main

    return replay_main(args.replay_args)


def _backup(args: argparse.Namespace) -> int:
    from avatar_rtc.backup import BackupError, backup

    settings = settings_mod.load(args)
    try:
        summary = backup(settings, args.output)
    except BackupError as exc:
        print(f"avatar-rtc backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup written: {summary.describe()}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from avatar_rtc.backup import BackupError, restore

    settings = settings_mod.load(args)
    try:
        summary = restore(settings, args.archive, force=args.force)
    except BackupError as exc:
        print(f"avatar-rtc restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {summary.describe()} into {settings.storage.data_dir}")
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(), encoding="utf-8")
    print(f"written: {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-rtc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the voice agent server",
        description="Runs the voice agent server. --host and --port are short for "
        "--server-host and --server-port; docs/configuration.md describes every setting.")
    settings_mod.add_arguments(serve)
    serve.set_defaults(run=_serve)
    # Everything after `replay` is the replay tool's own command line (it has its own
    # --help); prefix "+" keeps this parser from reading its options.
    replay = commands.add_parser("replay", add_help=False, prefix_chars="+",
                                 help="replay audio to a server, or a recorded call offline")
    replay.add_argument("replay_args", nargs=argparse.REMAINDER)
    replay.set_defaults(run=_replay)
    backup = commands.add_parser(
        "backup", help="online backup of the database and the audio into a .tar archive",
        description="Backs up the database (consistent while the server runs) and the "
        "recordings/ and profiles/ folders of data_dir into one .tar archive.")
    backup.add_argument("output", type=Path,
                        help="the .tar file to write, or a folder to write a dated one in")
    settings_mod.add_arguments(backup)
    backup.set_defaults(run=_backup)
    restore = commands.add_parser(
        "restore", help="restore a backup archive into an empty data dir",
        description="Checks every file of the archive against its manifest, then restores "
        "the database and the files. Stop the server first.")
    restore.add_argument("archive", type=Path, help="a .tar written by `avatar-rtc backup`")
    restore.add_argument("--force", action="store_true",
                         help="replace the database and files of a non-empty data dir")
    settings_mod.add_arguments(restore)
    restore.set_defaults(run=_restore)
    docs = commands.add_parser(
        "config-docs", help="write the configuration reference (docs/configuration.md)",
        description="Writes the reference of every setting, from the settings themselves.")
    docs.add_argument("--output", type=Path, default=Path(DOC_PATH),
                      help=f"the Markdown file to write (default: {DOC_PATH})")
    docs.set_defaults(run=_config_docs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except settings_mod.SettingsError as exc:
        print(f"avatar-rtc: settings error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
