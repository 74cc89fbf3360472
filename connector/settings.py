"""Configuration: one frozen, typed settings object read from environment variables.

The environment is read once, at the entry point (``Settings.from_env(os.environ)``), and
nothing below the CLI reads it again. Each group owns one prefix (``TAOBAO_``, ``REDIS_``);
a variable with that prefix that no setting declares is rejected, so a typo such as
``TAOBAO_APPKEY`` fails loudly instead of being ignored. Kubernetes' service-link variables
(``REDIS_PORT``, ``REDIS_SERVICE_HOST`` … injected for a Service named ``redis``) are not
settings and are skipped.

Secrets are ``SecretStr``: printed as ``**********`` by ``repr``, ``str`` and logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.errors import ConfigError
from connector.taobao.signing import SignMethod

__all__ = [
    "KafkaSettings",
    "RedisSettings",
    "RuntimeSettings",
    "Settings",
    "SyncSettings",
    "TaobaoSettings",
]

_SERVICE_LINK: Final = re.compile(
    r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)$"
)

PositiveFloat = Annotated[float, Field(gt=0)]


def _json_object(value: Any) -> Any:
    """Environment variables are strings: accept a JSON object for mapping settings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON object ({exc.msg})") from None
    return value


class _Group(BaseModel):
    """A settings group read from the variables that start with ``env_prefix``."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    env_prefix: ClassVar[str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        values: dict[str, Any] = {}
        unknown: list[str] = []
        for name, raw in sorted(env.items()):
            if not name.startswith(cls.env_prefix):
                continue
            field = name.removeprefix(cls.env_prefix).lower()
            if field not in cls.model_fields:
                # Kubernetes injects REDIS_PORT & co. for a Service named "redis": not ours.
                if not _SERVICE_LINK.match(name):
                    unknown.append(name)
            elif raw != "":  # an empty variable means "use the default", as in Helm charts
                values[field] = raw
        problems = [f"{name} is not a setting" for name in unknown]
        try:
            group = cls.model_validate(values)
        except ValidationError as exc:
            problems.append(_describe(cls, exc))
        if problems:
            if unknown:
                known = ", ".join(cls.env_name(f) for f in cls.model_fields)
                problems.append(f"known {cls.env_prefix}* settings: {known}")
            raise ConfigError("; ".join(problems))
        return group

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{cls.env_prefix}{field.upper()}"


def _describe(group: type[_Group], exc: ValidationError) -> str:
    """One line per problem, naming the variable; never echoes the offending value."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = group.env_name(field) if field else group.env_prefix + "*"
        text = str(err["msg"]).removeprefix("Value error, ")
        message = "is required" if err["type"] == "missing" else text[:1].lower() + text[1:]
        lines.append(f"{name} {message}")
    return "; ".join(lines)


class TaobaoSettings(_Group):
    """The Taobao Open Platform app, the seller's session and the call policy."""

    env_prefix: ClassVar[str] = "TAOBAO_"

    app_key: str = Field(min_length=1)
    app_secret: SecretStr
    # The seller's OAuth access token ("session") and the refresh token that renews it.
    session: SecretStr | None = None
    refresh_token: SecretStr | None = None
    # When the configured session expires, if known (ISO 8601); refreshed this long before.
    session_expires_at: datetime | None = None
    refresh_margin_s: float = Field(default=300, ge=0)
    gateway_url: str = "https://eco.taobao.com/router/rest"
    # How the session is refreshed: "top" is the documented API taobao.top.auth.token.refresh
    # (through the gateway); "oauth" posts to TAOBAO_TOKEN_URL (the OAuth server's route).
    token_refresh: Literal["top", "oauth"] = "top"  # noqa: S105 (a mode, not a secret)
    token_url: str = "https://oauth.taobao.com/token"  # noqa: S105 (a URL, not a secret)
    # Warn (alert, WARNING) this long before the session, its write permission or its
    # refresh token expires, when the token says when.
    session_warn_s: float = Field(default=3 * 86_400, ge=0)
    sign_method: SignMethod = "hmac-sha256"
    simplify: bool = False
    # Per-app call budget shared by every replica through Redis. TOP publishes no QPS
    # figure (UNCONFIRMED), so the default is deliberately modest.
    qps: PositiveFloat = 10.0
    burst: int = Field(default=1, ge=1)
    # Optional tighter budgets per API method, as JSON: {"taobao.skus.quantity.update": 5}.
    method_qps: dict[str, PositiveFloat] = Field(default_factory=dict)
    # The app's calls per China-time day (TOP's published tiers: 5,000 before launch,
    # then 20k / 100k / 1M), counted across replicas; unset: no daily limit.
    daily_quota: int | None = Field(default=None, ge=1)
    # Ban assumed when a code-7 answer carries no "ban will last for N seconds".
    default_ban_s: float = Field(default=60, gt=0)
    timeout_s: PositiveFloat = 10.0
    connect_timeout_s: PositiveFloat = 5.0
    deadline_s: PositiveFloat = 30.0
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: PositiveFloat = 0.2
    backoff_max_s: PositiveFloat = 5.0
    max_connections: int = Field(default=8, ge=1)
    # The message-service bridge: Taobao's own orders, read from TMC, produced to the
    # orders topic (connector/tmc/bridge.py). One replica at a time runs it.
    tmc_enabled: bool = False
    tmc_group: str = Field(default="default", min_length=1)
    tmc_batch: int = Field(default=200, ge=10, le=200)  # messages per consume (TOP: 10-200)
    # After a short batch, wait this long before consuming again; each empty answer
    # doubles the wait up to tmc_idle_max_s (every consume is a call against the budget).
    tmc_poll_s: PositiveFloat = 1.0
    tmc_idle_max_s: PositiveFloat = 10.0

    _parse_method_qps = field_validator("method_qps", mode="before")(_json_object)

    @model_validator(mode="after")
    def _idle_after_poll(self) -> Self:
        if self.tmc_idle_max_s < self.tmc_poll_s:
            raise ValueError("TAOBAO_TMC_IDLE_MAX_S must not be below TAOBAO_TMC_POLL_S")
        return self


class RedisSettings(_Group):
    """The Redis server holding the ledger, the shared call budget and the tokens."""

    env_prefix: ClassVar[str] = "REDIS_"

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")  # may carry a password
    key_prefix: str = Field(default="tbsync", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    socket_timeout_s: PositiveFloat = 5.0


class KafkaSettings(_Group):
    """The event bus: where events come from and where results, alerts and rejects go."""

    env_prefix: ClassVar[str] = "KAFKA_"

    bootstrap_servers: str = Field(min_length=1)
    group_id: str = "taobao-connector"
    # Static group membership: a member that restarts with the same id (a crashed container
    # in the same pod) takes its partitions back at once, without waiting for its session
    # to time out. Unset: dynamic membership (each start is a new member).
    group_instance_id: str | None = Field(default=None, min_length=1, max_length=249)
    orders_topic: str = "orders"
    warehouse_topic: str = "warehouse-movements"
    results_topic: str = "stock-sync-results"
    alerts_topic: str = "stock-alerts"
    dead_letter_topic: str = "stock-sync-dead-letter"
    # One StockPush record per Taobao item the projection loop pushes.
    pushes_topic: str = "stock-sync-pushes"
    # Confluent Schema Registry; without it events are plain Avro with the schemas/ files.
    schema_registry_url: str | None = None
    schema_registry_basic_auth: SecretStr | None = None  # "user:password"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    batch_max_events: int = Field(default=500, ge=1)
    batch_wait_ms: int = Field(default=200, ge=0)
    # Extra librdkafka properties as JSON, for what the settings above do not cover.
    extra_config: dict[str, str | int | float | bool] = Field(default_factory=dict)

    _parse_extra = field_validator("extra_config", mode="before")(_json_object)

    TOPICS: ClassVar[tuple[str, ...]] = (
        "orders_topic",
        "warehouse_topic",
        "results_topic",
        "alerts_topic",
        "dead_letter_topic",
        "pushes_topic",
    )

    @model_validator(mode="after")
    def _distinct_topics(self) -> Self:
        # One topic for two roles would feed the connector its own outputs, or mix records
        # of different schemas in one topic.
        seen: dict[str, str] = {}
        for field in self.TOPICS:
            name = getattr(self, field)
            if name in seen:
                raise ValueError(
                    f"topics {self.env_name(seen[name])} and {self.env_name(field)} are "
                    f"both {name!r}: every topic must have one role"
                )
            seen[name] = field
        return self


class SyncSettings(_Group):
    """The stock rules and the Taobao projection."""

    env_prefix: ClassVar[str] = "SYNC_"

    # Taobao shows max(0, available - safety_stock).
    safety_stock: int = Field(default=0, ge=0)
    low_stock_threshold: int = Field(default=5, ge=0)
    # A quantity above this is bad input (a typo, a unit mix-up), not a stock movement.
    max_quantity: int = Field(default=100_000, ge=1)
    # Capped: the ledger writes one order's lines in one Lua call, and Lua's stack limits
    # how many values one call can unpack.
    max_lines: int = Field(default=500, ge=1, le=1000)
    # Warehouse assumed for a shipment whose line names none.
    default_warehouse: str = Field(default="DEFAULT", min_length=1)
    # How long an event id (and a closed order's state) is remembered: longer than any
    # replay. An order with a line still reserved keeps its state until it is closed.
    dedupe_ttl_s: int = Field(default=14 * 86_400, ge=60)
    mapping_ttl_s: int = Field(default=3_600, ge=1)
    unmapped_retry_s: int = Field(default=300, ge=1)
    push_concurrency: int = Field(default=4, ge=1)
    # How often the projection looks for pending SKUs whose retry time has come while no
    # new change wakes it (a change wakes it at once).
    sweep_interval_s: PositiveFloat = 1.0
    # Pending SKUs the projection takes per pass (oldest change first): a smaller pass
    # reaches a fresh change sooner when the call budget is tight.
    push_batch_skus: int = Field(default=200, ge=1, le=1000)
    push_lease_s: PositiveFloat = 60.0


class RuntimeSettings(_Group):
    """How the process runs: its HTTP endpoints, logs and shutdown."""

    env_prefix: ClassVar[str] = "CONNECTOR_"

    # /healthz, /readyz and /metrics; 0 turns the server off.
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"  # noqa: S104 (a pod listens on its own interface)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # After SIGTERM, stop fetching and finish the batch in hand within this time; keep it
    # below the pod's terminationGracePeriodSeconds.
    shutdown_timeout_s: PositiveFloat = 25.0
    # Readiness fails when the ingest loop has not come round for this long (wedged); the
    # projection reports its own stall in the readiness body.
    stall_timeout_s: PositiveFloat = 120.0
    # At start, wait this long for the broker and Redis to answer (readiness 503 meanwhile)
    # before giving up with exit 1; a pod then is not crash-looping through a Redis restart.
    startup_timeout_s: PositiveFloat = 300.0


class Settings(BaseModel):
    """Everything the connector is configured with."""

    model_config = ConfigDict(frozen=True)

    taobao: TaobaoSettings
    redis: RedisSettings
    kafka: KafkaSettings
    sync: SyncSettings = Field(default_factory=SyncSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)

    def secret_values(self) -> list[str]:
        """Every configured secret, for log scrubbing (a last line of defence)."""
        secrets = [
            self.taobao.app_secret,
            self.taobao.session,
            self.taobao.refresh_token,
            self.kafka.sasl_password,
            self.kafka.schema_registry_basic_auth,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None]
        password = urlsplit(self.redis.url.get_secret_value()).password
        # Both spellings: as written in the URL and as redis-py sends it (percent-decoded).
        passwords = [password, unquote(password)] if password else []
        return [v for v in [*values, *passwords] if v]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read and validate every group; all problems are reported together."""
        problems: list[str] = []
        groups: dict[str, _Group] = {}
        for name, group in _GROUPS:
            try:
                groups[name] = group.from_env(env)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return cls.model_validate(groups)


_GROUPS: Final[tuple[tuple[str, type[_Group]], ...]] = (
    ("taobao", TaobaoSettings),
    ("redis", RedisSettings),
    ("kafka", KafkaSettings),
    ("sync", SyncSettings),
    ("runtime", RuntimeSettings),
)
