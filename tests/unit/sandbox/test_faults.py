"""The sandbox's pure fault decisions and call limiter."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from connector.sandbox.faults import (
    NO_FAULT,
    CallLimiter,
    FaultConfig,
    FaultDecision,
    decide,
    injected_error,
)

METHOD = "taobao.item.quantity.update"


def run(config: FaultConfig, seed: int, n: int, method: str = METHOD) -> list[FaultDecision]:
    rng = random.Random(seed)
    return [decide(config, rng, method) for _ in range(n)]


def test_default_config_never_faults_and_draws_nothing() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert decide(FaultConfig(), rng, METHOD) is NO_FAULT
    assert rng.getstate() == state
    assert not FaultConfig().active


def test_same_seed_same_sequence() -> None:
    config = FaultConfig(error_rates={"isp.remote-service-timeout": 0.2}, drop_after_apply_rate=0.2)
    assert run(config, 7, 200) == run(config, 7, 200)
    assert run(config, 7, 200) != run(config, 8, 200)


def test_rates_are_respected_roughly() -> None:
    config = FaultConfig(
        error_rates={"10": 0.1, "isp.remote-service-error": 0.1},
        timeout_rate=0.1,
        hang_after_apply_rate=0.1,
        drop_after_apply_rate=0.1,
        timeout_s=2.5,
        latency_ms=5,
    )
    decisions = run(config, 42, 5000)
    kinds = Counter(d.kind for d in decisions)
    for kind in ("timeout", "hang_after_apply", "drop_after_apply"):
        assert 0.08 < kinds[kind] / 5000 < 0.12
    assert 0.17 < kinds["error"] / 5000 < 0.23
    assert 0.45 < kinds["none"] / 5000 < 0.55
    assert all(d.latency_s == 0.005 for d in decisions)
    assert all(d.hold_s == 2.5 for d in decisions if d.kind in ("timeout", "hang_after_apply"))


def test_certain_fault_and_applies_change() -> None:
    [decision] = run(FaultConfig(drop_after_apply_rate=1.0), 0, 1)
    assert decision.kind == "drop_after_apply" and decision.applies_change
    [decision] = run(FaultConfig(timeout_rate=1.0), 0, 1)
    assert decision.kind == "timeout" and not decision.applies_change
    [decision] = run(FaultConfig(error_rates={"7": 1.0}), 0, 1)
    assert decision.kind == "error" and not decision.applies_change


def test_method_filter() -> None:
    config = FaultConfig(error_rates={"10": 1.0}, latency_ms=3, methods=[METHOD])  # type: ignore[arg-type]
    assert config.methods == (METHOD,)
    assert run(config, 0, 1)[0].kind == "error"
    assert run(config, 0, 1, "taobao.item.seller.get") == [NO_FAULT]


@pytest.mark.parametrize(
    ("key", "code", "msg", "sub_code"),
    [
        ("7", 7, "App Call Limited", "accesscontrol.limited-by-app-access-count"),
        ("10", 10, "Service Currently Unavailable", None),
        ("isp.remote-service-timeout", 15, "Remote service error", "isp.remote-service-timeout"),
        (
            "isv.item-is-delete:invalid-numIid-or-iid",
            15,
            "Remote service error",
            "isv.item-is-delete:invalid-numIid-or-iid",
        ),
    ],
)
def test_injected_error_shapes(key: str, code: int, msg: str, sub_code: str | None) -> None:
    error = injected_error(key)
    assert (error.code, error.msg, error.sub_code) == (code, msg, sub_code)
    assert error.starts_ban == (code == 7)


@pytest.mark.parametrize(
    "document",
    [
        {"error_rates": {"oops": 0.1}},
        {"error_rates": {"10": 1.5}},
        {"error_rates": {"10": 0.6}, "timeout_rate": 0.6},
        {"timeout_rate": "0.1"},
        {"latency_ms": -1},
        {"methods": "taobao.item.seller.get"},
        {"unknown": 1},
        {"error_rates": {"10": True}},
        [],
    ],
)
def test_bad_configs_are_refused(document: Any) -> None:
    with pytest.raises(ValueError):
        FaultConfig.from_json(document)


def test_json_round_trip() -> None:
    document = {
        "latency_ms": 2.0,
        "error_rates": {"7": 0.01, "isp.remote-service-timeout": 0.02},
        "timeout_rate": 0.03,
        "timeout_s": 1.5,
        "hang_after_apply_rate": 0.04,
        "drop_after_apply_rate": 0.05,
        "methods": ["taobao.skus.quantity.update"],
    }
    config = FaultConfig.from_json(document)
    assert config.to_json() == document
    assert FaultConfig.from_json(config.to_json()) == config


def test_limiter_unlimited_never_bans_by_itself() -> None:
    limiter = CallLimiter(None, ban_s=3)
    assert all(limiter.check("k", t / 1000) is None for t in range(1000))
    assert limiter.ban("k", 1.0) == 3
    assert limiter.check("k", 2.5) == 2
    assert limiter.check("k", 4.1) is None


def test_limiter_bucket_and_ban() -> None:
    limiter = CallLimiter(2.0, ban_s=2)
    assert limiter.check("k", 0.0) is None  # burst of 2
    assert limiter.check("k", 0.0) is None
    assert limiter.check("k", 0.1) == 2  # over budget: banned for 2 s
    assert limiter.check("k", 1.5) == 1  # remaining rounded up, at least 1
    assert limiter.check("other", 1.5) is None  # per app key
    assert limiter.bans(1.5) == {"k": 0.6}
    assert limiter.check("k", 2.2) is None  # the ban is over and tokens refilled
    limiter.reset()
    assert limiter.bans(2.2) == {}


def test_limiter_ban_of_chosen_length_extends_but_never_shortens() -> None:
    limiter = CallLimiter(None, ban_s=1)
    assert limiter.ban_left("k", 10.0) == 0.0
    assert limiter.ban("k", 10.0, seconds=60) == 60
    assert limiter.check("k", 10.5) == 60  # 59.5 s left, shown rounded up
    assert limiter.ban("k", 20.0, seconds=5) == 50  # a shorter ban keeps the longer one
    assert limiter.ban("k", 20.0) == 50  # so does the default ban_s
    assert limiter.ban("k", 30.0, seconds=60.5) == 61  # a longer one extends it
    assert limiter.ban_left("k", 30.0) == 60.5
    assert limiter.bans(30.0) == {"k": 60.5}
    assert limiter.check("k", 90.4) == 1
    assert limiter.check("k", 90.5) is None
    assert limiter.ban_left("k", 90.5) == 0.0
    assert limiter.check("other", 30.0) is None
