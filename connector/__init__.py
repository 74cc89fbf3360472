"""Taobao/Tmall stock sync connector."""

__version__ = "0.1.0"
