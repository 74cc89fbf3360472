"""``taobao-connector sandbox`` (and ``python -m connector.sandbox``): run the gateway.

Prints one line saying where it listens and the app key (never the secret or tokens), then
serves until SIGINT/SIGTERM. Bad arguments give one message naming what to fix and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from connector.sandbox.faults import FaultConfig
from connector.sandbox.model import CatalogError
from connector.sandbox.server import SandboxConfig, SandboxEndpoints, run_forever
from connector.sandbox.state import load_configured_catalog

__all__ = ["build_parser", "config_from_args", "main"]

PROG: Final = "taobao-connector sandbox"
_USAGE_ERROR: Final = 2
_DEFAULTS: Final = SandboxConfig()


class UsageError(Exception):
    """An argument that cannot be used; the message says what to fix."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Local Taobao Open Platform (TOP) gateway sandbox."
    )
    add = parser.add_argument
    add("--host", default=_DEFAULTS.host, help="address to listen on (default %(default)s)")
    add("--port", type=int, default=_DEFAULTS.port, help="port; 0 picks a free one")
    add("--app-key", default=_DEFAULTS.app_key, help="the accepted app key")
    add("--app-secret", default=_DEFAULTS.app_secret, help="the app secret used to verify signs")
    add("--session", default=_DEFAULTS.session, help="the access token issued at start")
    add("--refresh-token", default=_DEFAULTS.refresh_token, help="the refresh token at start")
    add("--session-ttl-s", type=float, default=_DEFAULTS.session_ttl_s, help="token lifetime")
    add(
        "--fixed-tokens",
        action="store_true",
        help="fixed-length tokens, as for seller-backend apps: every refresh is refused",
    )
    add(
        "--write-ttl-s",
        type=float,
        help="write permission (w1) lapses this long after a token is issued: writes get 27",
    )
    add("--catalog", type=Path, help="catalog JSON file (default: the built-in demo shop)")
    add("--qps", type=float, help="per-app call limit in calls/s (default: unlimited)")
    add("--ban-s", type=int, default=_DEFAULTS.ban_s, help="ban length after a call limit")
    add(
        "--daily-quota",
        type=int,
        help="calls per app key per China-time day, then code 7 until midnight (default: none)",
    )
    add("--max-skew-s", type=float, default=_DEFAULTS.max_skew_s, help="allowed clock skew")
    add("--faults", help="fault config as JSON, or @FILE holding it")
    add("--seed", type=int, help="seed for fault decisions (repeatable runs)")
    add(
        "--zero-onsale",
        choices=("reject", "auto_delist"),
        default=_DEFAULTS.zero_onsale,
        help="what a stock change leaving an on-sale item at 0 does (default %(default)s)",
    )
    return parser


def _faults(value: str | None) -> FaultConfig:
    if value is None:
        return FaultConfig()
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--faults: cannot read {value[1:]}: {exc}") from None
    try:
        document: Any = json.loads(text)
        return FaultConfig.from_json(document)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--faults: not valid JSON ({exc})") from None
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Turn parsed arguments into a config, checking the catalog and faults up front."""
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    if args.write_ttl_s is not None and args.write_ttl_s <= 0:
        raise UsageError("--write-ttl-s must be > 0 (leave it out for the session's lifetime)")
    if args.daily_quota is not None and args.daily_quota < 1:
        raise UsageError("--daily-quota must be >= 1 (leave it out for no quota)")
    if args.qps is not None and args.qps <= 0:
        raise UsageError("--qps must be > 0 (leave it out for no limit)")
    if args.ban_s < 1 or args.session_ttl_s <= 0 or args.max_skew_s < 0:
        raise UsageError("--ban-s must be >= 1, --session-ttl-s > 0 and --max-skew-s >= 0")
    if not args.app_key or not args.app_secret or not args.session:
        raise UsageError("--app-key, --app-secret and --session must not be empty")
    try:
        load_configured_catalog(args.catalog)
    except CatalogError as exc:
        raise UsageError(f"--catalog {args.catalog}: {exc}") from None
    return SandboxConfig(
        host=args.host,
        port=args.port,
        app_key=args.app_key,
        app_secret=args.app_secret,
        session=args.session,
        refresh_token=args.refresh_token,
        session_ttl_s=args.session_ttl_s,
        refreshable=not args.fixed_tokens,
        write_ttl_s=args.write_ttl_s,
        catalog_path=args.catalog,
        qps=args.qps,
        ban_s=args.ban_s,
        daily_quota=args.daily_quota,
        max_skew_s=args.max_skew_s,
        zero_onsale=args.zero_onsale,
        faults=_faults(args.faults),
        seed=args.seed,
    )


def _announce(app_key: str) -> Any:
    def on_ready(endpoints: SandboxEndpoints) -> None:
        print(
            f"sandbox TOP gateway listening: gateway {endpoints.gateway_url} "
            f"token {endpoints.token_url} app_key {app_key}",
            flush=True,
        )

    return on_ready


def main(argv: Sequence[str]) -> int:
    """Run the sandbox in the foreground; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed the usage message
        return exc.code if isinstance(exc.code, int) else _USAGE_ERROR
    try:
        config = config_from_args(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return _USAGE_ERROR
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run_forever(config, _announce(config.app_key))
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0
