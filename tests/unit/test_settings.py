"""Settings read from an environment mapping: validation, Kubernetes noise, secret hygiene."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from connector.errors import ConfigError
from connector.settings import RedisSettings, Settings, TaobaoSettings

APP_SECRET = "app-secret-5f2c9d81e7"
SESSION = "6100a2b3c4d5e6f7a8b9-session"
REFRESH = "6101f0e1d2c3b4a5-refresh"
REDIS_PASSWORD = "hunter2-redis-pw"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis.prod:6379/0"
SECRETS = (APP_SECRET, SESSION, REFRESH, REDIS_PASSWORD)

BASE = {
    "TAOBAO_APP_KEY": "12345678",
    "TAOBAO_APP_SECRET": APP_SECRET,
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
}
FULL = {
    **BASE,
    "TAOBAO_SESSION": SESSION,
    "TAOBAO_REFRESH_TOKEN": REFRESH,
    "REDIS_URL": REDIS_URL,
}


def _error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return str(info.value)


def test_minimal_environment_uses_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.taobao.app_key == "12345678"
    assert settings.taobao.app_secret.get_secret_value() == APP_SECRET
    assert settings.taobao.session is None
    assert settings.taobao.sign_method == "hmac-sha256"
    assert settings.taobao.qps == 10.0
    assert settings.taobao.burst == 1
    assert settings.taobao.method_qps == {}
    assert settings.taobao.gateway_url == "https://eco.taobao.com/router/rest"
    assert settings.redis.url.get_secret_value() == "redis://127.0.0.1:6379/0"
    assert settings.redis.key_prefix == "tbsync"


def test_values_are_parsed() -> None:
    env = {
        **FULL,
        "TAOBAO_SESSION_EXPIRES_AT": "2024-05-01T12:00:00+08:00",
        "TAOBAO_SIGN_METHOD": "md5",
        "TAOBAO_SIMPLIFY": "true",
        "TAOBAO_QPS": "2.5",
        "TAOBAO_BURST": "4",
        "TAOBAO_MAX_ATTEMPTS": " 3 ",
        "REDIS_KEY_PREFIX": "shop-1.tb_sync",
    }
    settings = Settings.from_env(env)
    assert settings.taobao.session == SecretStr(SESSION)
    assert settings.taobao.refresh_token == SecretStr(REFRESH)
    assert settings.taobao.session_expires_at == datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
    assert settings.taobao.sign_method == "md5"
    assert settings.taobao.simplify is True
    assert (settings.taobao.qps, settings.taobao.burst) == (2.5, 4)
    assert settings.taobao.max_attempts == 3
    assert settings.redis.url.get_secret_value() == REDIS_URL
    assert settings.redis.key_prefix == "shop-1.tb_sync"


def test_missing_required_and_bad_values_are_reported_together() -> None:
    env = {
        "TAOBAO_QPS": "fast",
        "TAOBAO_SIGN_METHOD": "sha1",
        "TAOBAO_BURST": "0",
        "REDIS_KEY_PREFIX": "has space",
    }
    message = _error(env)
    for name in (
        "TAOBAO_APP_KEY",
        "TAOBAO_APP_SECRET",
        "TAOBAO_QPS",
        "TAOBAO_SIGN_METHOD",
        "TAOBAO_BURST",
        "REDIS_KEY_PREFIX",
    ):
        assert name in message
    assert "TAOBAO_APP_KEY is required" in message
    assert "TAOBAO_APP_SECRET is required" in message
    assert "fast" not in message  # values are never echoed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TAOBAO_QPS", "0"),
        ("TAOBAO_QPS", "-1"),
        ("TAOBAO_MAX_ATTEMPTS", "0"),
        ("TAOBAO_MAX_ATTEMPTS", "2.5"),
        ("TAOBAO_DEFAULT_BAN_S", "0"),
        ("TAOBAO_REFRESH_MARGIN_S", "-5"),
        ("TAOBAO_SIMPLIFY", "maybe"),
        ("TAOBAO_SESSION_EXPIRES_AT", "next tuesday"),
        ("REDIS_SOCKET_TIMEOUT_S", "0"),
        ("REDIS_KEY_PREFIX", "a{b}"),
        ("TAOBAO_APP_KEY", "   "),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    message = _error({**BASE, name: value})
    assert message.startswith("invalid configuration: ")
    assert name in message


@pytest.mark.parametrize("typo", ["TAOBAO_APPKEY", "TAOBAO_SECRET", "REDIS_HOST", "REDIS_URI"])
def test_unknown_variable_with_our_prefix_is_rejected(typo: str) -> None:
    message = _error({**BASE, typo: "x"})
    assert f"{typo} is not a setting" in message
    assert "TAOBAO_APP_KEY" in message or "REDIS_URL" in message  # lists the known ones


def test_unknown_variable_is_reported_with_other_problems() -> None:
    message = _error(
        {
            "TAOBAO_APPKEY": "12345678",
            "TAOBAO_APP_SECRET": APP_SECRET,
            "REDIS_KEY_PREFIX": "bad prefix",
        }
    )
    assert "TAOBAO_APPKEY is not a setting" in message
    assert "REDIS_KEY_PREFIX" in message


@pytest.mark.parametrize(
    "extra",
    [
        {"REDIS_PORT": "tcp://10.0.0.1:6379"},
        {"REDIS_SERVICE_HOST": "10.0.0.1"},
        {"REDIS_SERVICE_PORT": "6379"},
        {"REDIS_SERVICE_PORT_REDIS": "6379"},
        {"REDIS_PORT_6379_TCP": "tcp://10.0.0.1:6379"},
        {"REDIS_PORT_6379_TCP_ADDR": "10.0.0.1"},
        {"REDIS_PORT_6379_TCP_PORT": "6379"},
        {"REDIS_PORT_6379_TCP_PROTO": "tcp"},
        {"TAOBAO_SERVICE_PORT": "8080"},
        {"TAOBAO_SERVICE_HOST": "10.0.0.2"},
        {"TAOBAO_GATEWAY_PORT": "tcp://10.0.0.3:80"},
        {"TAOBAO_GATEWAY_PORT_80_TCP_ADDR": "10.0.0.3"},
        {"PATH": "/usr/bin", "HOME": "/root", "taobao_app_key": "lower-case is not ours"},
    ],
)
def test_kubernetes_service_links_and_foreign_variables_are_ignored(
    extra: dict[str, str],
) -> None:
    settings = Settings.from_env({**BASE, **extra})
    assert settings.redis == RedisSettings()
    assert settings.taobao.app_key == "12345678"


@pytest.mark.parametrize(
    ("name", "attr", "default"),
    [
        ("TAOBAO_QPS", "qps", 10.0),
        ("TAOBAO_SIGN_METHOD", "sign_method", "hmac-sha256"),
        ("TAOBAO_SESSION", "session", None),
        ("TAOBAO_METHOD_QPS", "method_qps", {}),
        ("TAOBAO_SESSION_EXPIRES_AT", "session_expires_at", None),
    ],
)
def test_empty_string_means_default(name: str, attr: str, default: object) -> None:
    assert getattr(Settings.from_env({**BASE, name: ""}).taobao, attr) == default


def test_empty_required_variable_is_missing() -> None:
    message = _error({"TAOBAO_APP_KEY": "", "TAOBAO_APP_SECRET": ""})
    assert "TAOBAO_APP_KEY is required" in message
    assert "TAOBAO_APP_SECRET is required" in message


def test_empty_redis_url_means_default() -> None:
    settings = Settings.from_env({**BASE, "REDIS_URL": ""})
    assert settings.redis.url.get_secret_value() == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"taobao.skus.quantity.update": 5}', {"taobao.skus.quantity.update": 5.0}),
        ('{"a.b": 0.5, "c.d": "2"}', {"a.b": 0.5, "c.d": 2.0}),
        ("{}", {}),
    ],
)
def test_method_qps_json(raw: str, expected: dict[str, float]) -> None:
    assert Settings.from_env({**BASE, "TAOBAO_METHOD_QPS": raw}).taobao.method_qps == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{taobao.skus.quantity.update: 5}", "JSON object"),
        ("taobao.skus.quantity.update=5", "JSON object"),
        ("[5]", "dictionary"),
        ('{"a.b": 0}', "greater than 0"),
        ('{"a.b": "fast"}', "number"),
    ],
)
def test_bad_method_qps_is_a_clear_error(raw: str, fragment: str) -> None:
    message = _error({**BASE, "TAOBAO_METHOD_QPS": raw})
    assert "TAOBAO_METHOD_QPS" in message
    assert fragment in message


# --- secrets --------------------------------------------------------------------------------


def test_secrets_are_masked_in_repr_and_str() -> None:
    settings = Settings.from_env(FULL)
    for text in (repr(settings), str(settings), repr(settings.taobao), repr(settings.redis)):
        for secret in SECRETS:
            assert secret not in text
        assert "**********" in text
    assert "12345678" in repr(settings)  # the app key is not a secret


@pytest.mark.parametrize(
    "bad",
    [
        {"TAOBAO_QPS": "fast", "REDIS_KEY_PREFIX": "a b"},
        {"TAOBAO_SIGN_METHOD": APP_SECRET},  # a secret pasted into the wrong variable
        {"TAOBAO_SESSION_EXPIRES_AT": SESSION},
        {"TAOBAO_METHOD_QPS": REFRESH},
        {"TAOBAO_METHOD_QPS": f'{{"{REFRESH}": 0}}'},
        {"REDIS_SOCKET_TIMEOUT_S": REDIS_URL},
        {"TAOBAO_APP_KEY": ""},
    ],
)
def test_error_never_contains_a_secret(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**FULL, **bad})
    rendered = "".join(traceback.format_exception(info.value))
    for secret in SECRETS:
        assert secret not in str(info.value)
        assert secret not in rendered


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(FULL)
    with pytest.raises(ValidationError):
        settings.taobao.qps = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.redis = RedisSettings()  # type: ignore[misc]
    assert settings.taobao.qps == 10.0


def test_groups_read_only_their_prefix() -> None:
    taobao = TaobaoSettings.from_env({**BASE, "REDIS_URL": REDIS_URL})
    redis = RedisSettings.from_env({**BASE, "REDIS_URL": REDIS_URL})
    assert taobao.app_key == "12345678"
    assert redis.url.get_secret_value() == REDIS_URL


def test_pattern_error_quotes_the_pattern_unchanged() -> None:
    assert "A-Za-z0-9" in _error({**BASE, "REDIS_KEY_PREFIX": "has space"})


def test_unknown_variable_does_not_hide_other_problems_in_its_group() -> None:
    message = _error(
        {**BASE, "TAOBAO_APPKEY": "12345678", "TAOBAO_SECRETT": "x", "TAOBAO_QPS": "fast"}
    )
    assert "TAOBAO_APPKEY" in message
    assert "TAOBAO_SECRETT" in message
    assert "TAOBAO_QPS" in message


def test_a_declared_setting_shaped_like_a_service_link_is_still_read() -> None:
    env = {**BASE, "CONNECTOR_HTTP_PORT": "9100", "REDIS_PORT": "tcp://10.0.0.1:6379"}

    settings = Settings.from_env(env)

    assert settings.runtime.http_port == 9100  # a real setting, though it ends in _PORT


def test_one_topic_for_two_roles_is_rejected_naming_both() -> None:
    message = _error({**BASE, "KAFKA_PUSHES_TOPIC": "stock-sync-results"})

    assert "KAFKA_RESULTS_TOPIC and KAFKA_PUSHES_TOPIC" in message
    assert "one role" in message
