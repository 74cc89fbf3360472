"""The command line as a user meets it: one clear line per mistake, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis as sync_redis

from connector.sandbox.server import SandboxServer
from connector.settings import KafkaSettings

pytestmark = pytest.mark.integration


def run_cli(
    *args: str, env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TAOBAO_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def sandbox_env(
    sandbox: SandboxServer, redis_url: str, broker: str, **overrides: str
) -> dict[str, str]:
    config = sandbox.config
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "TAOBAO_APP_KEY": config.app_key,
        "TAOBAO_APP_SECRET": config.app_secret,
        "TAOBAO_SESSION": config.session,
        "TAOBAO_REFRESH_TOKEN": config.refresh_token,
        "TAOBAO_GATEWAY_URL": sandbox.gateway_url,
        "TAOBAO_TOKEN_URL": sandbox.token_url,
        "TAOBAO_DEADLINE_S": "3",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": "cli-test",
        **overrides,
    }


def topic_env(kafka: KafkaSettings) -> dict[str, str]:
    return {kafka.env_name(field): getattr(kafka, field) for field in kafka.TOPICS}


def test_check_passes_against_the_sandbox(
    sandbox: SandboxServer, redis_url: str, kafka_settings: KafkaSettings
) -> None:
    env = sandbox_env(sandbox, redis_url, kafka_settings.bootstrap_servers)
    result = run_cli("check", env={**env, **topic_env(kafka_settings)})

    assert result.returncode == 0, result.stderr
    assert "kafka: ok" in result.stderr
    assert "taobao: ok" in result.stderr


def test_check_names_a_topic_missing_on_the_broker(
    sandbox: SandboxServer, redis_url: str, kafka_settings: KafkaSettings
) -> None:
    env = sandbox_env(sandbox, redis_url, kafka_settings.bootstrap_servers)
    topics = {**topic_env(kafka_settings), "KAFKA_PUSHES_TOPIC": "no-such-topic"}
    result = run_cli("check", env={**env, **topics})

    assert result.returncode == 1, result.stderr
    assert "kafka: FAILED" in result.stderr
    assert "KAFKA_PUSHES_TOPIC (no-such-topic)" in result.stderr
    assert "taobao: ok" in result.stderr  # the other checks still ran


def test_missing_settings_are_named_together() -> None:
    result = run_cli("check", env={"TAOBAO_QPS": "fast", "TAOBAO_APPKEY": "typo"})

    assert result.returncode == 2
    assert "TAOBAO_APPKEY is not a setting" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_redis_names_the_variable(sandbox: SandboxServer, broker: str) -> None:
    env = sandbox_env(sandbox, "redis://:hunter2-password@127.0.0.1:9/0", broker)
    result = run_cli("check", env=env)

    assert result.returncode == 1
    assert "REDIS_URL" in result.stderr
    assert "hunter2-password" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"TAOBAO_APP_SECRET": "wrong-secret-value"}, "TAOBAO_APP_SECRET"),
        ({"TAOBAO_APP_KEY": "wrong-app-key"}, "TAOBAO_APP_KEY"),
    ],
)
def test_wrong_credentials_name_the_setting(
    sandbox: SandboxServer, redis_url: str, broker: str, override: dict[str, str], named: str
) -> None:
    result = run_cli("check", env=sandbox_env(sandbox, redis_url, broker, **override))

    assert result.returncode == 1
    assert named in result.stderr
    assert "wrong-secret-value" not in result.stderr
    assert sandbox.config.session not in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_names_the_variable_and_the_rest_is_still_checked(
    sandbox: SandboxServer, redis_url: str
) -> None:
    result = run_cli("check", env=sandbox_env(sandbox, redis_url, "127.0.0.1:9"))

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["kafka", "redis", "taobao"]
    assert "KAFKA_BOOTSTRAP_SERVERS" in lines[0]
    assert lines[1:] == ["redis: ok", f"taobao: ok (gateway {sandbox.gateway_url})"]
    assert "Traceback" not in result.stderr


def test_with_redis_down_taobao_is_reported_as_not_checked(
    sandbox: SandboxServer, kafka_settings: KafkaSettings
) -> None:
    env = sandbox_env(sandbox, "redis://127.0.0.1:9/0", kafka_settings.bootstrap_servers)
    result = run_cli("check", env={**env, **topic_env(kafka_settings)})

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "kafka: ok"
    assert lines[1].startswith("redis: FAILED") and "REDIS_URL" in lines[1]
    assert lines[2].startswith("taobao: not checked")


def test_a_client_setting_librdkafka_rejects_is_a_configuration_error(
    sandbox: SandboxServer, redis_url: str, broker: str
) -> None:
    env = sandbox_env(sandbox, redis_url, broker, KAFKA_EXTRA_CONFIG='{"no.such.property": 1}')
    result = run_cli("check", env=env)

    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert "KAFKA_" in result.stderr


def test_a_bad_log_level_is_a_usage_error() -> None:
    result = run_cli("--log-level", "chatty", "check", env={})

    assert result.returncode == 2
    assert "--log-level" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_arguments_are_usage_errors() -> None:
    result = run_cli("check", "--bogus", env={})

    assert result.returncode == 2
    assert "--bogus" in result.stderr


def test_a_rebuild_over_a_ledger_that_is_there_changes_nothing(
    sandbox: SandboxServer, redis_url: str, kafka_settings: KafkaSettings
) -> None:
    env = sandbox_env(sandbox, redis_url, kafka_settings.bootstrap_servers)
    env = {**env, **topic_env(kafka_settings), "REDIS_KEY_PREFIX": "cli-rebuild"}
    client = sync_redis.Redis.from_url(redis_url)
    client.hset("{cli-rebuild}:ledger", "id", "live")
    try:
        result = run_cli("ledger", "rebuild", "--dry-run", env=env)
    finally:
        client.delete("{cli-rebuild}:ledger")
        client.close()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "taobao-connector: the ledger is there (marker id live): a rebuild replaces only a "
        "lost ledger (LEDGER_LOST); nothing was changed"
    ]
