"""A local stand-in for the Taobao Open Platform (TOP) gateway, for the demo and the tests.

It speaks TOP's HTTP protocol (signing, envelopes, error codes, OAuth refresh), keeps a small
shop in memory with the platform's stock rules, and can inject faults and call limits.
"""

from connector.sandbox.faults import FaultConfig
from connector.sandbox.server import SandboxConfig, SandboxEndpoints, SandboxServer

__all__ = ["FaultConfig", "SandboxConfig", "SandboxEndpoints", "SandboxServer"]
