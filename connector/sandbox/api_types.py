"""What a TOP API of the sandbox is: its parameter check, its runner and the call's context."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connector.sandbox.responses import Body

if TYPE_CHECKING:
    from connector.sandbox.state import SandboxState

__all__ = ["Api", "CallContext", "Runner"]

Runner = Callable[["CallContext"], Body]


@dataclass(frozen=True)
class CallContext:
    state: SandboxState
    now: datetime
    simplify: bool


@dataclass(frozen=True)
class Api:
    """One TOP API: ``parse`` validates parameters (40/41) and returns the runner."""

    parse: Callable[[Mapping[str, str]], Runner]
    writes: bool = False
    needs_session: bool = True
