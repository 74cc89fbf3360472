"""Taobao's own orders from its message service (TMC) into the orders topic."""
