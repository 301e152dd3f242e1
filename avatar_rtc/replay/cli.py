"""`avatar-rtc replay`: play audio to a server over WebRTC, or a recorded call offline.

    avatar-rtc replay webrtc --url http://127.0.0.1:8080 q1.wav q2.mp3 \\
        --barge-in stop.ogg --barge-in-at 1.5 --report html
    avatar-rtc replay offline --call-id 3f2c... --fast --data-dir data --report
    avatar-rtc replay offline recording.ogg
    avatar-rtc replay report replay-results/20261122T010203Z-webrtc --format html

Each run writes a folder (--out; default replay-results/<time>-<mode>/) with
timeline.json, user.wav, agent.wav, summary.txt and, with --report, report.png or
report.html. Exit status: 0 done, 2 bad input (file, call ID, option), 3 the server or
the call failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from avatar_rtc import settings as settings_mod
from avatar_rtc.caller import VOICED_PEAK
from avatar_rtc.logs import setup_logging
from avatar_rtc.replay.errors import BAD_INPUT, CALL_FAILED, ReplayError
from avatar_rtc.replay.progress import Progress
from avatar_rtc.replay.sources import AudioSource, load_audio
from avatar_rtc.replay.summary import render, summarize
from avatar_rtc.replay.timeline import Timeline

DEFAULT_OUT = Path("replay-results")


def _positive(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_output(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path,
                     help="folder for the results (default replay-results/<time>-<mode>)")
    out.add_argument("--report", nargs="?", const="png", choices=("png", "html", "both"),
                     help="also draw the call: report.png (default) or report.html")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--verbose", action="store_true", help="log at INFO on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-rtc replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)

    webrtc = modes.add_parser("webrtc", help="call a running server and play audio files",
                              description="Call a server over WebRTC like a browser: play "
                              "each file as the microphone in real time, wait for the reply, "
                              "and measure latency on this machine's clock.")
    webrtc.add_argument("files", nargs="+", type=Path,
                        help="audio files, one utterance each (wav, flac, mp3, ogg, ...)")
    webrtc.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    webrtc.add_argument("--gap", type=_positive, default=0.8,
                        help="seconds of silence after each reply ends (default 0.8)")
    webrtc.add_argument("--lead", type=_positive, default=0.3,
                        help="seconds of silence before each file (default 0.3)")
    webrtc.add_argument("--barge-in", type=Path, metavar="FILE",
                        help="speak this file over the agent's reply")
    webrtc.add_argument("--barge-in-at", type=_positive, default=1.0, metavar="SECONDS",
                        help="how far into the reply to start it, or the first moment "
                             "after that the agent speaks (default 1.0)")
    webrtc.add_argument("--barge-in-turn", type=int, default=-1, metavar="N",
                        help="the reply to the N-th file (0-based; default -1, the last)")
    webrtc.add_argument("--voice", help="the offer's voice: a profile ID or Piper voice name")
    webrtc.add_argument("--timeout", type=_positive, default=60.0,
                        help="seconds to wait for a reply to start, or for a quiet "
                        "agent to end its turn (default 60)")
    webrtc.add_argument("--jitter-frames", type=int, default=4, metavar="N",
                        help="frames this client's jitter buffer holds before playing "
                        "(default 4, aiortc's own; 1 measures closer to the wire)")
    webrtc.add_argument("--ice-host-addresses", metavar="LIST",
                        help="host addresses this client offers (default: 127.0.0.1 when "
                        "the server is on loopback, otherwise aioice's choice)")
    _add_output(webrtc)
    webrtc.set_defaults(run=_run_webrtc)

    offline = modes.add_parser(
        "offline", help="feed a recorded call through the pipeline, no WebRTC",
        description="Run a recorded call's user audio (by call ID from storage, or a file) "
        "through the current backends and compare with the original call. Settings "
        "flags are the server's (avatar-rtc serve --help).")
    source = offline.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="the user's audio, any format")
    source.add_argument("--call-id", help="a stored call: its user track and its turns")
    offline.add_argument("--fast", action="store_true",
                         help="skip idle time instead of waiting in real time")
    offline.add_argument("--data-dir", dest="setting:storage.data_dir", metavar="DIR",
                         help="the server's data folder (same as --storage-data-dir)")
    offline.add_argument("--database-url", dest="setting:storage.database_url",
                         metavar="URL", help="same as --storage-database-url")
    _add_output(offline)
    settings_mod.add_arguments(offline)
    offline.set_defaults(run=_run_offline)

    report = modes.add_parser("report", help="draw the report of a saved replay",
                              description="Render report.png / report.html from a "
                              "replay's results folder.")
    report.add_argument("folder", type=Path, help="a folder holding timeline.json")
    report.add_argument("--format", choices=("png", "html", "both"), default="png")
    report.set_defaults(run=_run_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else BAD_INPUT
    try:
        code: int = args.run(args)
    except ReplayError as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except settings_mod.SettingsError as exc:
        print(f"replay: settings error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("replay: interrupted", file=sys.stderr)
        return 130
    return code


# ---- webrtc ------------------------------------------------------------------------


def _check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ReplayError(f"--url {url!r} is not an http(s) URL like http://127.0.0.1:8080")
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _speech(source: AudioSource, what: str) -> AudioSource:
    if not np.any(np.abs(source.pcm) > VOICED_PEAK):
        raise ReplayError(f"{what} {source.name}: no audible sound in it (peak below "
                          f"{VOICED_PEAK}/32768)")
    return source


def _run_webrtc(args: argparse.Namespace) -> int:
    from avatar_rtc.replay.webrtc import WebrtcOptions, replay_webrtc
    from media.latency import set_audio_prefetch
    from signaling.ice import restrict_host_addresses

    setup_logging("INFO" if args.verbose else "WARNING")
    url = _check_url(args.url)
    sources = [_speech(load_audio(path, 48000), "file") for path in args.files]
    barge = _speech(load_audio(args.barge_in, 48000), "barge-in file") if args.barge_in \
        else None
    if barge is not None and not -len(sources) <= args.barge_in_turn < len(sources):
        raise ReplayError(f"--barge-in-turn {args.barge_in_turn} is out of range for "
                          f"{len(sources)} file(s)")
    if not 1 <= args.jitter_frames <= 16:
        raise ReplayError(f"--jitter-frames {args.jitter_frames}: must be 1-16")
    set_audio_prefetch(args.jitter_frames)
    if args.ice_host_addresses is not None:
        restrict_host_addresses([a.strip() for a in args.ice_host_addresses.split(",")
                                 if a.strip()])
    elif _is_loopback(urlparse(url).hostname or ""):
        restrict_host_addresses(["127.0.0.1"])  # aioice never offers loopback by itself
    options = WebrtcOptions(gap_s=args.gap, lead_s=args.lead, barge_in=barge,
                            barge_in_at_s=args.barge_in_at, barge_in_turn=args.barge_in_turn,
                            voice=args.voice, reply_timeout_s=args.timeout,
                            jitter_frames=args.jitter_frames)
    progress = Progress(len(sources) + (1 if barge else 0), "replay", enabled=not args.quiet)
    progress.update(0, f"calling {url}")
    try:
        timeline = asyncio.run(replay_webrtc(url, sources, options, progress))
    finally:
        progress.close()
    return _finish(timeline, args)


# ---- offline ------------------------------------------------------------------------


def _run_offline(args: argparse.Namespace) -> int:
    settings = settings_mod.load(args)
    setup_logging("INFO" if args.verbose else "WARNING", settings.log.json)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local paths only
    timeline = asyncio.run(_offline(args, settings))
    return _finish(timeline, args)


async def _offline(args: argparse.Namespace, settings: settings_mod.Settings) -> Timeline:
    from avatar_rtc.backends.registry import load_backends
    from avatar_rtc.calls import conversation_config
    from avatar_rtc.replay.offline import load_recorded_call, replay_offline

    # Everything about the input is checked before the models load (seconds).
    original, call_id = None, None
    if args.call_id:
        call = await load_recorded_call(settings, args.call_id)
        user, original, source = call.user, call.original, f"call {call.call_id}"
        call_id = call.call_id
    else:
        user = await asyncio.to_thread(load_audio, args.file, 16000)
        source = str(args.file)
    progress = Progress(user.duration_s, "replay", unit="s", enabled=not args.quiet)
    progress.update(0, "loading models")
    try:
        try:
            backends = await load_backends(settings)
        except Exception as exc:
            raise ReplayError(f"the backends failed to load: {type(exc).__name__}: {exc}",
                              CALL_FAILED) from None
        try:
            timeline = await replay_offline(backends, conversation_config(settings), user,
                                            source=source, fast=args.fast, original=original,
                                            progress=progress)
            timeline.call_id = call_id
            return timeline
        finally:
            await backends.aclose()
    finally:
        progress.close()


# ---- output -------------------------------------------------------------------------


def _finish(timeline: Timeline, args: argparse.Namespace) -> int:
    folder = args.out
    if folder is None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = DEFAULT_OUT / f"{stamp}-{timeline.mode}"
    path = timeline.save(folder)
    text = render(timeline)
    (folder / "summary.txt").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"\ntimeline: {path}")
    if args.report:
        for written in _reports(timeline, folder, args.report):
            print(f"report:   {written}")
    figures = summarize(timeline.turns)
    if figures["turns"] and not figures["answered"]:
        print(f"replay: error: the agent answered none of the {figures['turns']} turns",
              file=sys.stderr)
        return CALL_FAILED
    return 0


def _reports(timeline: Timeline, folder: Path, kind: str) -> list[Path]:
    from avatar_rtc.replay.report import render_html, render_png

    written = []
    if kind in ("png", "both"):
        written.append(render_png(timeline, folder / "report.png"))
    if kind in ("html", "both"):
        written.append(render_html(timeline, folder / "report.html"))
    return written


def _run_report(args: argparse.Namespace) -> int:
    path = args.folder / "timeline.json"
    if not path.exists():
        raise ReplayError(f"{args.folder}: no timeline.json in it")
    try:
        timeline = Timeline.load(path)
    except (ValueError, TypeError, KeyError) as exc:
        raise ReplayError(f"{path}: not a replay timeline ({exc})") from None
    for written in _reports(timeline, args.folder, args.format):
        print(f"report: {written}")
    return 0
