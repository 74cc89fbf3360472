"""Taobao Open Platform (TOP): signing, protocol, error classification and the async client."""
