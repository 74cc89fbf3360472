"""``taobao-connector``: the command line.

The environment is read here, once, into ``Settings``; nothing below reads it again. Every
error a user can make ends as one line on stderr naming what to fix, with exit code 2 for
configuration and 1 for everything else; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from connector import __version__
from connector.errors import ConfigError, ConnectorError, redact
from connector.service.logs import setup_logging

__all__ = ["main"]

EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")

log = logging.getLogger("connector")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taobao-connector",
        description="Keeps Taobao/Tmall stock in sync with the merchant's inventory.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default INFO, or CONNECTOR_LOG_LEVEL for run)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="run the demo on embedded defaults (broker, Redis and Taobao sandbox started for you)",
    )
    commands.add_parser(
        "run",
        help="run the connector: settings from the environment (see README), until SIGTERM",
    )
    produce = commands.add_parser(
        "produce", help="send sample events, or events from a JSON-lines file, to the inputs"
    )
    source = produce.add_argument_group("events").add_mutually_exclusive_group(required=True)
    source.add_argument("--sample", action="store_true", help="the demo's story")
    source.add_argument("--file", type=Path, help="JSON lines, one event each")
    commands.add_parser(
        "check",
        help="check the configuration, the broker, Redis, the Taobao credentials and session",
    )
    ledger = commands.add_parser("ledger", help="operator tools for the ledger in Redis")
    tools = ledger.add_subparsers(dest="tool", required=True, metavar="TOOL")
    rebuild = tools.add_parser(
        "rebuild",
        help="rebuild a lost ledger (LEDGER_LOST) by replaying the input topics up to the "
        "group's committed offsets",
    )
    rebuild.add_argument(
        "--dry-run",
        action="store_true",
        help="read and report what would be applied; write nothing",
    )
    rebuild.add_argument(
        "--restart",
        action="store_true",
        help="start again a rebuild that stopped half way (its marker says it is running)",
    )
    accept = tools.add_parser(
        "accept-offsets",
        help="after moving the group's offsets forward on purpose: move the ledger's "
        "positions up to them, so the skipped input is not read again",
    )
    accept.add_argument("--dry-run", action="store_true", help="print what would move")
    commands.add_parser(
        "sandbox",
        help="run the local Taobao Open Platform sandbox gateway (see 'sandbox --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    setup_logging(args.log_level or "INFO", "text")
    if args.command == "sandbox":
        # The sandbox has its own parser; it gets everything after the command name.
        from connector.sandbox.cli import main as sandbox_main

        return sandbox_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    secrets: list[str] = []
    try:
        return _dispatch(args, secrets)
    except ConfigError as exc:
        print(
            f"taobao-connector: configuration error: {redact(str(exc), secrets)}", file=sys.stderr
        )
        return EXIT_USAGE
    except ConnectorError as exc:
        print(f"taobao-connector: {redact(str(exc), secrets)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        # Not one of ours: still one line (the log has the traceback), never a secret.
        log.exception("unexpected error")
        message = redact(f"{type(exc).__name__}: {exc}", secrets)
        print(f"taobao-connector: unexpected error: {message}", file=sys.stderr)
        return EXIT_FAILURE


def _dispatch(args: argparse.Namespace, secrets: list[str]) -> int:
    """Run the command; ``secrets`` is filled as soon as the settings are known, so the
    caller can scrub them from any error it prints."""
    command: str = args.command
    if command == "demo":
        from connector.demo.demo import run_demo

        return asyncio.run(run_demo(os.environ))
    if command == "produce":
        from connector.demo import produce
        from connector.settings import KafkaSettings, SyncSettings

        kafka = KafkaSettings.from_env(os.environ)
        if args.file is not None:
            events = produce.read_events(
                args.file, SyncSettings.from_env(os.environ), now_ms=produce.now_ms()
            )
            return produce.produce_events(kafka, events)
        return produce.produce_events(kafka, produce.sample_events(produce.now_ms()))
    from connector.settings import Settings

    settings = Settings.from_env(os.environ)
    secrets.extend(settings.secret_values())
    if command == "run":
        from connector.service.service import run_connector

        runtime = settings.runtime
        level = args.log_level or runtime.log_level
        setup_logging(level, runtime.log_format, secrets=settings.secret_values())
        return asyncio.run(run_connector(settings, os.environ))
    if command == "check":
        from connector.service.check import run_check

        return asyncio.run(run_check(settings))
    if command == "ledger" and args.tool == "rebuild":
        from connector.service.rebuild import run_rebuild

        return asyncio.run(run_rebuild(settings, dry_run=args.dry_run, restart=args.restart))
    if command == "ledger":
        from connector.service.accept_offsets import run_accept_offsets

        return asyncio.run(run_accept_offsets(settings, dry_run=args.dry_run))
    raise AssertionError(command)
