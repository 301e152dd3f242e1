"""`avatar-rtc` command line: serve (more subcommands join as they are built)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from avatar_rtc import settings as settings_mod
from avatar_rtc.logs import setup_logging

log = logging.getLogger("avatar_rtc")


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from avatar_rtc.app import create_app

    settings = settings_mod.load(args)
    setup_logging(settings.log.level, settings.log.json)
    # Hub libraries must never reach out on their own: only configured URLs are used.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app = create_app(settings)
    host, port = settings.server.host, settings.server.port
    print(f"avatar_rtc: http://{host}:{port}/ (models load in the background; "
          f"GET /health says when ready)", flush=True)
    web.run_app(app, host=host, port=port, print=None, handle_signals=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-rtc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the voice agent server")
    settings_mod.add_arguments(serve)
    serve.set_defaults(run=_serve)
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
