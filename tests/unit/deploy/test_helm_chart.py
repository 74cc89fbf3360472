"""The Helm chart, rendered and linted by Helm's own Go code (``helm_python``), no cluster.

Every rendered manifest is checked against the Kubernetes schemas of a recent release with
``kubernetes_validate`` in strict mode (unknown fields are errors). Custom resources
(ServiceMonitor, ScaledObject) have no schema there: they are skipped by kind, explicitly,
and their shape is asserted by hand instead. The configuration the chart renders is fed to
``Settings.from_env``, so a chart value that the connector would refuse fails here.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import helm_python as helm
import kubernetes_validate
import prometheus_client
import pytest
import yaml

from connector.errors import ConfigError
from connector.metrics import SyncMetrics
from connector.settings import (
    KafkaSettings,
    RedisSettings,
    RuntimeSettings,
    Settings,
    SyncSettings,
    TaobaoSettings,
)
from connector.telemetry import TaobaoMetrics, setup_metrics

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "taobao-connector"
KUBE_VERSION = "1.35.0"
RELEASE = "shop"
NAMESPACE = "sync"
FULLNAME = f"{RELEASE}-taobao-connector"

# Custom resources: kubernetes_validate has no schema for them; their shape is asserted in
# test_custom_resources_have_the_expected_shape.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
GROUPS = (TaobaoSettings, RedisSettings, KafkaSettings, SyncSettings, RuntimeSettings)
SETTING_NAMES = {group.env_name(field) for group in GROUPS for field in group.model_fields}
SECRET_KEYS = {
    "TAOBAO_APP_SECRET",
    "TAOBAO_SESSION",
    "TAOBAO_REFRESH_TOKEN",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SCHEMA_REGISTRY_BASIC_AUTH",
    "REDIS_URL",
}
# Settings with no default: the connector refuses to start without them.
REQUIRED_SETTINGS = {"TAOBAO_APP_KEY", "TAOBAO_APP_SECRET", "KAFKA_BOOTSTRAP_SERVERS"}
# Every optional feature switch.
FEATURES = {
    "hpa": {"hpa": {"enabled": True}},
    "keda": {"keda": {"enabled": True}},
    "pdb": {"pdb": {"enabled": True}},
    "serviceMonitor": {"serviceMonitor": {"enabled": True}},
    "networkPolicy": {"networkPolicy": {"enabled": True}},
    "dashboard": {"dashboard": {"enabled": True}},
    "scrapeAnnotations": {"metrics": {"scrapeAnnotations": True}},
    "kafkaTls": {
        "kafka": {"securityProtocol": "SSL", "tls": {"enabled": True, "caSecretName": "kafka-ca"}}
    },
    "redisTls": {
        "redis": {"tls": {"enabled": True, "caSecretName": "redis-ca"}},
        "secrets": {"redisUrl": "rediss://connector:pw@redis.data:6380/0"},
    },
    "existingSecret": {"secrets": {"existingSecret": "shop-credentials"}},
    "otel": {"otel": {"endpoint": "http://otel-collector.observability:4318"}},
}


def load_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    return values


def merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep merge, the way Helm coalesces -f files (later wins)."""
    result = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value)
            else:
                result[key] = copy.deepcopy(value)
    return result


REQUIRED = load_values("default")
ALL_FEATURES = load_values("all-features")


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> dict[str, str]:
    rendered: dict[str, str] = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return rendered


def manifests(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(chart, values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str = FULLNAME) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (connector,) = pod["containers"]
    return dict(connector)


def environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the pod gets: ConfigMap + Secret (envFrom) + env entries."""
    env = dict(one(docs, "ConfigMap")["data"])
    secrets = [d for d in docs if d["kind"] == "Secret"]
    for secret in secrets:
        env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for entry in container(docs).get("env", []):
        source = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[entry["name"]] = entry["value"] if source is None else f"<{source}>"
    return env


# --- rendering, linting, Kubernetes schemas ------------------------------------------------


def test_helm_engine_is_available() -> None:
    # The chart tests need Helm's Go engine in-process; say which one ran them.
    assert helm.helm_sdk_version().startswith("v4."), helm.helm_sdk_version()


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(REQUIRED, id="required-only"),
        pytest.param(ALL_FEATURES, id="all-features"),
        *(pytest.param(merge(REQUIRED, v), id=name) for name, v in FEATURES.items()),
    ],
)
def test_every_manifest_is_valid_kubernetes(chart: Any, values: dict[str, Any]) -> None:
    docs = manifests(chart, values)
    assert docs
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["namespace"] == NAMESPACE, where
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, where
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where} is not valid Kubernetes {KUBE_VERSION}: {path}: {exc.message}")


def test_default_release_renders_the_core_objects_only(chart: Any) -> None:
    docs = manifests(chart, REQUIRED)
    assert kinds(docs) == ["ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"]


def test_all_features_render_every_optional_object(chart: Any) -> None:
    docs = manifests(chart, ALL_FEATURES)
    assert kinds(docs) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ScaledObject",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    with_hpa = manifests(chart, merge(ALL_FEATURES, {"keda": {"enabled": False}}, FEATURES["hpa"]))
    assert "HorizontalPodAutoscaler" in kinds(with_hpa)


@pytest.mark.parametrize(
    "values",
    [pytest.param(REQUIRED, id="required-only"), pytest.param(ALL_FEATURES, id="all-features")],
)
def test_helm_lint_passes_strict(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []
    # The only finding is informational: Chart.yaml has no icon (there is none to point at).
    infos = {m["error"] for m in report["messages"]}
    assert infos <= {"icon is recommended"}


def test_helm_lint_without_values_names_the_required_ones() -> None:
    # By design: the chart has required values, so a bare `helm lint` reports exactly them.
    report = helm.lint(CHART)
    text = " ".join(report["errors"])
    for key in ("/kafka/bootstrapServers", "/taobao/appKey", "/secrets/taobaoAppSecret"):
        assert key in text


def test_chart_versions_follow_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == pyproject["project"]["version"]


def test_image_tag_defaults_to_app_version_and_digest_pins(chart: Any) -> None:
    assert container(manifests(chart, REQUIRED))["image"].endswith(":0.1.0")
    digest = "sha256:" + "a" * 64
    pinned = container(manifests(chart, merge(REQUIRED, {"image": {"digest": digest}})))
    assert pinned["image"] == f"ghcr.io/example/taobao-connector@{digest}"


# --- the pod ---------------------------------------------------------------------------------


def test_pod_is_locked_down(chart: Any) -> None:
    docs = manifests(chart, REQUIRED)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Read-only root: /tmp is an emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_probes_and_resources(chart: Any) -> None:
    docs = manifests(chart, REQUIRED)
    c = container(docs)
    assert c["args"] == ["run"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    # Long enough for Redis, the Taobao session and a consumer-group join (about 23 s
    # with librdkafka's default session timeout, more in a rebalance).
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    service = one(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


@pytest.mark.parametrize(("timeout", "margin", "grace"), [(25, 10, 35), (40, 10, 50), (7.5, 5, 13)])
def test_grace_period_is_shutdown_timeout_plus_margin(
    chart: Any, timeout: float, margin: int, grace: int
) -> None:
    values = merge(
        REQUIRED,
        {"connector": {"shutdownTimeoutS": timeout}, "terminationGraceMarginSeconds": margin},
    )
    docs = manifests(chart, values)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == grace
    # ...tied to the value the connector itself reads.
    assert float(one(docs, "ConfigMap")["data"]["CONNECTOR_SHUTDOWN_TIMEOUT_S"]) == timeout


def test_config_changes_roll_the_pods(chart: Any) -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        deployment = one(manifests(chart, values), "Deployment")
        return dict(deployment["spec"]["template"]["metadata"]["annotations"])

    before = annotations(REQUIRED)
    assert re.fullmatch(r"[0-9a-f]{64}", before["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", before["checksum/secret"])
    config = annotations(merge(REQUIRED, {"taobao": {"qps": 3}}))
    assert config["checksum/config"] != before["checksum/config"]
    assert config["checksum/secret"] == before["checksum/secret"]
    secret = annotations(merge(REQUIRED, {"secrets": {"taobaoSession": "new"}}))
    assert secret["checksum/secret"] != before["checksum/secret"]
    assert secret["checksum/config"] == before["checksum/config"]
    # A Secret the chart does not own has no hash to take.
    existing = annotations(merge(REQUIRED, FEATURES["existingSecret"]))
    assert "checksum/secret" not in existing


def test_topology_spread_over_zones_and_nodes(chart: Any) -> None:
    pod = one(manifests(chart, REQUIRED), "Deployment")["spec"]["template"]["spec"]
    constraints = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert {c["whenUnsatisfiable"] for c in constraints} == {"ScheduleAnyway"}
    selector = one(manifests(chart, REQUIRED), "Deployment")["spec"]["selector"]["matchLabels"]
    assert all(c["labelSelector"]["matchLabels"] == selector for c in constraints)


def test_envfrom_configmap_and_secret(chart: Any) -> None:
    docs = manifests(chart, REQUIRED)
    assert container(docs)["envFrom"] == [
        {"configMapRef": {"name": FULLNAME}},
        {"secretRef": {"name": FULLNAME}},
    ]
    existing = manifests(chart, merge(REQUIRED, FEATURES["existingSecret"]))
    assert "Secret" not in kinds(existing)
    assert container(existing)["envFrom"][1] == {"secretRef": {"name": "shop-credentials"}}


def test_autoscalers_own_the_replica_count(chart: Any) -> None:
    deployment = one(manifests(chart, merge(REQUIRED, {"replicaCount": 3})), "Deployment")
    assert deployment["spec"]["replicas"] == 3
    for feature in ("hpa", "keda"):
        scaled = one(manifests(chart, merge(REQUIRED, FEATURES[feature])), "Deployment")
        assert "replicas" not in scaled["spec"], feature


# --- configuration: every variable is a setting the connector accepts --------------------------


def test_settings_from_rendered_configuration_are_accepted(chart: Any) -> None:
    env = environment(manifests(chart, ALL_FEATURES))
    settings = Settings.from_env(env)
    # Values arrive typed and intact (no 1.2096e+06 from Helm's float64 numbers).
    assert settings.sync.dedupe_ttl_s == 1_209_600
    assert settings.sync.max_quantity == 500_000
    assert settings.taobao.qps == 8.5
    assert settings.taobao.method_qps == {
        "taobao.skus.quantity.update": 5,
        "taobao.item.quantity.update": 2.5,
    }
    assert settings.taobao.simplify is False
    assert settings.kafka.extra_config["fetch.max.bytes"] == 10_485_760
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.ssl_ca_location == "/etc/taobao-connector/kafka-tls/ca.pem"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "sasl-password"
    assert settings.runtime.shutdown_timeout_s == 40
    assert settings.runtime.startup_timeout_s == 600
    assert settings.kafka.group_instance_id == "<metadata.name>"  # the pod's name
    assert settings.runtime.log_level == "WARNING"
    # The projection loop's settings.
    assert settings.kafka.pushes_topic == "shop-1.stock-sync-pushes"
    assert settings.sync.push_batch_skus == 100
    # redis.tls: the chart points the rediss:// URL at the mounted CA.
    url = settings.redis.url.get_secret_value()
    assert url == (
        "rediss://connector:redis-password@redis.data.svc:6380/0"
        "?ssl_ca_certs=/etc/taobao-connector/redis-tls/ca.crt"
    )
    # Every value the all-features file sets reached the connector: nothing silently dropped.
    dumped = settings.model_dump()
    for group in ("taobao", "redis", "kafka", "sync"):
        for key in ALL_FEATURES[group]:
            if key in {"tls", "staticMembership"}:  # chart-only (see above)
                continue
            field = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
            assert field in dumped[group], f"{group}.{key} is not a setting"
    assert Settings.from_env(environment(manifests(chart, REQUIRED))).kafka.bootstrap_servers


def test_http_port_reaches_the_connector(chart: Any) -> None:
    docs = manifests(chart, ALL_FEATURES)
    assert container(docs)["ports"][0]["containerPort"] == 9090
    assert Settings.from_env(environment(docs)).runtime.http_port == 9090


def test_every_variable_is_a_real_setting(chart: Any) -> None:
    for values in (REQUIRED, ALL_FEATURES):
        docs = manifests(chart, values)
        config = set(one(docs, "ConfigMap")["data"])
        secret = set(one(docs, "Secret")["data"])
        env = {e["name"] for e in container(docs).get("env", [])}
        names = (config | secret | env) - {n for n in config if n.startswith("OTEL_")}
        assert names <= SETTING_NAMES, sorted(names - SETTING_NAMES)
        assert secret <= SECRET_KEYS
        assert not (config & SECRET_KEYS), "a secret setting is in the ConfigMap"
    # With everything filled, every secret key the chart documents is rendered.
    assert set(one(manifests(chart, ALL_FEATURES), "Secret")["data"]) == SECRET_KEYS
    # The required settings all come from chart values.
    required = environment(manifests(chart, REQUIRED))
    assert required.keys() >= REQUIRED_SETTINGS
    otel = {k for k in one(manifests(chart, ALL_FEATURES), "ConfigMap")["data"] if "OTEL" in k}
    assert otel == {
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_RESOURCE_ATTRIBUTES",
    }


def test_values_keys_name_real_settings(chart: Any) -> None:
    """values.yaml's settings groups are the camelCase settings, one to one."""
    defaults = chart.values
    prefixes = {"taobao": "TAOBAO_", "redis": "REDIS_", "kafka": "KAFKA_", "sync": "SYNC_"}
    prefixes["connector"] = "CONNECTOR_"
    for group, prefix in prefixes.items():
        for key in defaults[group]:
            # Chart-only: tls mounts a CA (sets KAFKA_SSL_CA_LOCATION); staticMembership
            # sets KAFKA_GROUP_INSTANCE_ID from the pod's name.
            if key in {"tls", "staticMembership"}:
                continue
            name = prefix + re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()
            assert name in SETTING_NAMES, f"{group}.{key} -> {name} is not a setting"
    for key in defaults["secrets"]:
        if key in {"existingSecret", "create", "annotations"}:
            continue
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()
        assert name in SECRET_KEYS, f"secrets.{key} -> {name}"


def test_static_membership_names_each_member_after_its_pod(chart: Any) -> None:
    assert "KAFKA_GROUP_INSTANCE_ID" not in environment(manifests(chart, REQUIRED))
    proxy = {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}
    env = environment(manifests(chart, merge(ALL_FEATURES, {"extraEnv": [proxy]})))
    assert env["KAFKA_GROUP_INSTANCE_ID"] == "<metadata.name>"
    assert env["HTTPS_PROXY"] == proxy["value"]  # extraEnv still rendered beside it


def test_unset_settings_are_left_to_the_connector(chart: Any) -> None:
    config = one(manifests(chart, REQUIRED), "ConfigMap")["data"]
    assert set(config) - {k for k in config if k.startswith("OTEL_")} == {
        "TAOBAO_APP_KEY",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_GROUP_ID",
        "KAFKA_ORDERS_TOPIC",
        "KAFKA_WAREHOUSE_TOPIC",
        "KAFKA_PUSHES_TOPIC",
        "CONNECTOR_HTTP_PORT",
        "CONNECTOR_LOG_FORMAT",
        "CONNECTOR_LOG_LEVEL",
        "CONNECTOR_SHUTDOWN_TIMEOUT_S",
    }
    assert config["OTEL_TRACES_EXPORTER"] == "none"  # no collector configured
    assert all(isinstance(v, str) for v in config.values())
    # The chart's default pushes topic is the connector's own.
    assert config["KAFKA_PUSHES_TOPIC"] == KafkaSettings.model_fields["pushes_topic"].default


@pytest.mark.parametrize("skus", [1, 200, 1000])
def test_projection_settings_reach_the_connector(chart: Any, skus: int) -> None:
    values = merge(
        REQUIRED, {"kafka": {"pushesTopic": "shop-2.pushes"}, "sync": {"pushBatchSkus": skus}}
    )
    docs = manifests(chart, values)
    config = one(docs, "ConfigMap")["data"]
    assert config["KAFKA_PUSHES_TOPIC"] == "shop-2.pushes"
    assert config["SYNC_PUSH_BATCH_SKUS"] == str(skus)
    settings = Settings.from_env(environment(docs))
    assert settings.kafka.pushes_topic == "shop-2.pushes"
    assert settings.sync.push_batch_skus == skus
    # null leaves both to the connector (stock-sync-pushes, 200).
    unset = merge(REQUIRED, {"kafka": {"pushesTopic": None}, "sync": {"pushBatchSkus": None}})
    left = one(manifests(chart, unset), "ConfigMap")["data"]
    assert "KAFKA_PUSHES_TOPIC" not in left
    assert "SYNC_PUSH_BATCH_SKUS" not in left


def test_the_connector_rejects_what_the_chart_would_never_render() -> None:
    # The guard above is only useful if from_env really rejects unknown names.
    with pytest.raises(ConfigError, match="TAOBAO_APPKEY is not a setting"):
        Settings.from_env({**REQUIRED_ENV, "TAOBAO_APPKEY": "x"})


REQUIRED_ENV = {
    "TAOBAO_APP_KEY": "k",
    "TAOBAO_APP_SECRET": "s",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
}


# --- the schema rejects bad values with a message naming the key -----------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            merge(REQUIRED, {"replicaCount": "three"}),
            r"at '/replicaCount': got string, want integer",
            id="wrong-type",
        ),
        pytest.param(
            merge(REQUIRED, {"kafka": {"bootstrapServers": ""}}),
            r"at '/kafka/bootstrapServers': minLength",
            id="missing-bootstrap-servers",
        ),
        pytest.param(
            merge(REQUIRED, {"taobao": {"appKey": ""}}),
            r"at '/taobao/appKey': minLength",
            id="missing-app-key",
        ),
        pytest.param(
            merge(REQUIRED, {"secrets": {"taobaoAppSecret": ""}}),
            r"at '/secrets/taobaoAppSecret': minLength",
            id="missing-app-secret",
        ),
        pytest.param(
            merge(REQUIRED, {"secrets": {"create": False}}),
            r"at '/secrets/create': value must be true",
            id="no-secret-source",
        ),
        pytest.param(
            merge(REQUIRED, {"taobao": {"apKey": "typo"}}),
            r"at '/taobao': additional properties 'apKey' not allowed",
            id="unknown-setting",
        ),
        pytest.param(
            merge(REQUIRED, {"taobao": {"qps": "ten"}}),
            r"at '/taobao/qps': got string, want null or number",
            id="wrong-setting-type",
        ),
        pytest.param(
            merge(REQUIRED, {"kafka": {"securityProtocol": "SASL_SSL"}}),
            r"at '/kafka/saslMechanism'",
            id="sasl-without-mechanism",
        ),
        pytest.param(
            merge(REQUIRED, {"kafka": {"tls": {"enabled": True}}}),
            r"at '/kafka/tls/caSecretName': minLength",
            id="tls-without-ca",
        ),
        pytest.param(
            merge(REQUIRED, {"connector": {"logLevel": "LOUD"}}),
            r"at '/connector/logLevel': value must be one of",
            id="bad-enum",
        ),
        pytest.param(
            merge(REQUIRED, {"sync": {"pushBatchSkus": 0}}),
            r"at '/sync/pushBatchSkus': minimum: got 0, want 1",
            id="push-batch-skus-zero",
        ),
        pytest.param(
            merge(REQUIRED, {"sync": {"pushBatchSkus": 1001}}),
            r"at '/sync/pushBatchSkus': maximum: got 1,001, want 1,000",
            id="push-batch-skus-above-1000",
        ),
        pytest.param(
            merge(REQUIRED, {"sync": {"pushBatchSkus": "many"}}),
            r"at '/sync/pushBatchSkus': got string, want null or integer",
            id="push-batch-skus-not-integer",
        ),
        pytest.param(
            merge(REQUIRED, {"kafka": {"pushesTopic": ""}}),
            r"at '/kafka/pushesTopic': minLength: got 0, want 1",
            id="empty-pushes-topic",
        ),
    ],
)
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(chart, values)


def test_schema_bounds_of_sync_settings_are_the_connectors() -> None:
    """values.schema.json refuses exactly what SyncSettings refuses (pushBatchSkus 1..1000)."""
    chart_schema = json.loads((CHART / "values.schema.json").read_text())
    sync = chart_schema["properties"]["sync"]["properties"]
    connector = SyncSettings.model_json_schema()["properties"]
    assert sync["pushBatchSkus"]["minimum"] == 1
    assert sync["pushBatchSkus"]["maximum"] == 1000
    bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    for key, rule in sync.items():
        field = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        expected = {b: connector[field][b] for b in bounds if b in connector[field]}
        assert {b: rule[b] for b in bounds if b in rule} == expected, f"sync.{key}"


def test_schema_reports_every_missing_requirement_at_once(chart: Any) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(chart, {})
    text = str(caught.value)
    for key in ("/kafka/bootstrapServers", "/taobao/appKey", "/secrets/taobaoAppSecret"):
        assert key in text


def test_existing_secret_needs_no_secret_values(chart: Any) -> None:
    values = merge(REQUIRED, {"secrets": {"taobaoAppSecret": "", "create": False}})
    values = merge(values, FEATURES["existingSecret"])
    assert "Secret" not in kinds(manifests(chart, values))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            merge(REQUIRED, FEATURES["hpa"], FEATURES["keda"]),
            "mutually exclusive",
            id="hpa-and-keda",
        ),
        pytest.param(
            merge(REQUIRED, {"redis": FEATURES["redisTls"]["redis"]}),
            "needs a rediss:// URL",
            id="redis-tls-plain-url",
        ),
    ],
)
def test_template_rejects_inconsistent_values(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chart, values)


# --- optional features -----------------------------------------------------------------------


def test_custom_resources_have_the_expected_shape(chart: Any) -> None:
    docs = manifests(chart, ALL_FEATURES)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"

    scaled = one(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 12)
    triggers = spec["triggers"]
    assert [t["metadata"]["topic"] for t in triggers] == [
        "shop-1.orders",
        "shop-1.warehouse-movements",
    ]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == "shop-1-taobao-connector"
        assert meta["bootstrapServers"] == ALL_FEATURES["kafka"]["bootstrapServers"]
        assert meta["lagThreshold"] == "1000"
        assert meta["allowIdleConsumers"] == "false"
        assert all(isinstance(v, str) for v in meta.values())  # KEDA metadata is strings
        assert trigger["authenticationRef"] == {"name": "kafka-scram"}


def test_hpa_scales_on_cpu(chart: Any) -> None:
    hpa = one(manifests(chart, merge(REQUIRED, FEATURES["hpa"])), "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_pdb_selects_the_pods(chart: Any) -> None:
    docs = manifests(chart, merge(REQUIRED, FEATURES["pdb"]))
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]


def test_network_policy_opens_only_what_the_connector_uses(chart: Any) -> None:
    docs = manifests(chart, ALL_FEATURES)
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    namespaces = ingress["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert namespaces == ["monitoring"]
    ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {
        (53, "UDP"),
        (53, "TCP"),  # DNS
        (9096, "TCP"),  # Kafka
        (6380, "TCP"),  # Redis
        (443, "TCP"),  # Taobao gateway, and the extra rule
        (4318, "TCP"),  # OTLP
    }
    # Defaults: any source may reach the http port, and only it.
    default = one(manifests(chart, merge(REQUIRED, FEATURES["networkPolicy"])), "NetworkPolicy")
    (open_ingress,) = default["spec"]["ingress"]
    assert "from" not in open_ingress
    assert open_ingress["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_tls_ca_bundles_are_mounted(chart: Any) -> None:
    docs = manifests(chart, ALL_FEATURES)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-ca"
    assert volumes["redis-tls"]["secret"]["secretName"] == "redis-ca"
    assert mounts["kafka-tls"]["mountPath"] == "/etc/taobao-connector/kafka-tls"
    assert mounts["redis-tls"]["mountPath"] == "/etc/taobao-connector/redis-tls"
    assert all(mounts[name]["readOnly"] for name in ("kafka-tls", "redis-tls"))
    config = one(docs, "ConfigMap")["data"]
    assert config["KAFKA_SSL_CA_LOCATION"].startswith(mounts["kafka-tls"]["mountPath"] + "/")


def test_scrape_annotations(chart: Any) -> None:
    docs = manifests(chart, merge(REQUIRED, FEATURES["scrapeAnnotations"]))
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    default = one(manifests(chart, REQUIRED), "Deployment")["spec"]["template"]["metadata"]
    assert "prometheus.io/scrape" not in default["annotations"]


# What the dashboard must chart, by Prometheus name (checked below against what the
# connector really exports).
METRICS = {
    "sync_events_total",
    "sync_batch_duration_seconds_bucket",
    "sync_ledger_duration_seconds_bucket",
    "sync_dead_letters_total",
    "sync_alerts_total",
    "sync_step_retries_total",
    "sync_consumer_lag",
    "sync_pending_skus",
    "sync_pending_oldest_age_seconds",
    "sync_projection_paused",
    "sync_pushes_total",
    "sync_push_pass_duration_seconds_bucket",
    "taobao_ban_remaining_seconds",
    "taobao_calls_total",
    "taobao_call_duration_seconds_bucket",
    "taobao_retries_total",
    "taobao_budget_wait_seconds_bucket",
    "taobao_token_refreshes_total",
}
# Gone with the two-loop connector: the projection's pause is sync_projection_paused.
REMOVED_METRICS = {"sync_paused"}
FILTER = '{namespace=~"$namespace", pod=~"$pod"}'


@cache
def exported_metric_names() -> frozenset[str]:
    """The series names the connector serves on /metrics, from its own instruments.

    Every counter and histogram of SyncMetrics and TaobaoMetrics records one value and
    every gauge is bound to a state with one value, so each instrument appears.
    """
    provider, registry = setup_metrics()
    sync = SyncMetrics.create(provider)
    sync.observe_projection(
        SimpleNamespace(pending_skus=1, oldest_pending_age_s=2.0, ban_remaining_s=3.0, paused=True)
    )
    sync.observe_ingest(SimpleNamespace(lag={("t", 0): 1}))
    for instruments in (sync, TaobaoMetrics.create(provider)):
        for field in dataclasses.fields(instruments):
            instrument = getattr(instruments, field.name)
            if field.name == "meter":
                continue
            if hasattr(instrument, "add"):
                instrument.add(1)
            else:
                instrument.record(0.1)
    text = prometheus_client.generate_latest(registry).decode()
    return frozenset(
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    )


def dashboard_panels(chart: Any) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    docs = manifests(chart, ALL_FEATURES)
    config_map = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    ((key, text),) = config_map["data"].items()
    assert key == f"{FULLNAME}.json"  # unique per release in the sidecar's folder
    dashboard = json.loads(text)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return dashboard, text, panels


def promql(panels: list[dict[str, Any]]) -> list[str]:
    return [
        t["expr"]
        for p in panels
        if p.get("datasource", {}).get("type") == "prometheus"
        for t in p.get("targets", [])
        if t.get("expr")
    ]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:sync|taobao)_[a-z_]+)\b", expr))


def test_the_connector_exports_the_metrics_the_dashboard_needs() -> None:
    exported = exported_metric_names()
    assert exported >= METRICS, sorted(METRICS - exported)
    assert not exported & REMOVED_METRICS
    # The step-retry counter tells the two loops apart.
    provider, registry = setup_metrics()
    SyncMetrics.create(provider).retries.add(1, {"step": "commit", "loop": "ingest"})
    text = prometheus_client.generate_latest(registry).decode()
    assert re.search(r'sync_step_retries_total\{[^}]*loop="ingest"[^}]*step="commit"', text)


def test_dashboard_covers_the_metrics_and_traces(chart: Any) -> None:
    dashboard, text, panels = dashboard_panels(chart)
    assert dashboard["uid"] == FULLNAME
    assert "__" not in text.replace("__rate_interval", "")  # every placeholder replaced
    exprs = promql(panels)
    used = set().union(*map(metric_names, exprs))
    assert used >= METRICS, sorted(METRICS - used)
    # Every metric the dashboard queries is one the connector exports.
    exported = exported_metric_names()
    assert used <= exported, sorted(used - exported)
    assert not used & REMOVED_METRICS
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("events by type and status", "calls by method and outcome", "latency", "lag"):
        assert topic in titles
    trace_panels = [p for p in panels if p.get("datasource", {}).get("type") == "tempo"]
    assert trace_panels
    query = trace_panels[0]["targets"][0]["query"]
    assert 'resource.service.name = "$service"' in query
    service = next(v for v in dashboard["templating"]["list"] if v["name"] == "service")
    assert service["query"] == "taobao-connector-shop-1"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_charts_the_projection(chart: Any) -> None:
    _, _, panels = dashboard_panels(chart)
    by_title = {p["title"]: p for p in panels}
    exprs = promql(panels)

    def charted(pattern: str) -> list[str]:
        return [e for e in exprs if re.search(pattern, e)]

    assert charted(r"sum by \(outcome\) \(rate\(sync_pushes_total\{")
    assert charted(r"sync_projection_paused\{")
    assert charted(r"taobao_ban_remaining_seconds\{")
    assert charted(r"sync_pending_oldest_age_seconds\{")
    assert charted(r"sum by \(loop, step\) \(rate\(sync_step_retries_total\{")
    for title in ("Projection paused", "Taobao ban remaining", "Pushes by outcome"):
        assert title in by_title, title
    assert by_title["Taobao ban remaining"]["fieldConfig"]["defaults"]["unit"] == "s"
    assert by_title["Oldest pending change"]["fieldConfig"]["defaults"]["unit"] == "s"


def test_dashboard_panels_share_one_style(chart: Any) -> None:
    dashboard, _, panels = dashboard_panels(chart)
    for panel in panels:
        if panel["type"] == "text":
            continue
        source = panel["datasource"]
        where = panel["title"]
        if source["type"] == "prometheus":
            assert source["uid"] == "${datasource}", where
            for target in panel["targets"]:
                assert target["datasource"] == source, where
                # Every series selector is filtered by the namespace and pod variables.
                for name in metric_names(target["expr"]):
                    selectors = re.findall(rf"\b{name}(\{{[^}}]*\}})?", target["expr"])
                    assert selectors, where
                    assert all(sel == FILTER for sel in selectors), (where, name)
        # A panel fits the 24-column grid with whole numbers.
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), where
        assert grid["x"] + grid["w"] <= 24, where
    # Stat panels colour by their own thresholds.
    for panel in panels:
        if panel["type"] == "stat":
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0] == {"color": "green", "value": None}, panel["title"]
    # No two panels overlap.
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_chart_never_mentions_removed_metrics() -> None:
    for path in sorted(CHART.rglob("*")):
        if path.is_file():
            text = path.read_text()
            for name in REMOVED_METRICS:
                assert not re.search(rf"\b{name}\b", text), f"{path.relative_to(ROOT)}: {name}"


def test_notes_tell_how_to_check_the_release(chart: Any) -> None:
    notes = render(chart, REQUIRED)["taobao-connector/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{FULLNAME}" in notes
    assert "port-forward" in notes
    assert "/readyz" in notes
    assert "/metrics" in notes
    assert "| jq" in notes
    assert "stock-sync-results" in notes
    assert "stock-alerts" in notes
    assert "stock-sync-pushes" in notes
    # Readiness is ingest's: the notes say where the projection's state is.
    assert "jq .projection" in notes
    for name in ("sync_projection_paused", "taobao_ban_remaining_seconds"):
        assert name in notes
    keda = render(chart, merge(REQUIRED, FEATURES["keda"], {"keda": {"maxReplicas": 4}}))
    assert "A Taobao ban does not scale it up" in keda["taobao-connector/templates/NOTES.txt"]
    existing = render(chart, merge(REQUIRED, FEATURES["existingSecret"]))
    assert "TAOBAO_APP_SECRET" in existing["taobao-connector/templates/NOTES.txt"]


def test_the_documented_install_command_renders(chart: Any) -> None:
    # Exactly the --set flags of helm/README.md; Helm turns numeric strings into numbers.
    flags = [
        "image.repository=registry.example.com/shop/taobao-connector",
        "taobao.appKey=12345678",
        "kafka.bootstrapServers=kafka.kafka.svc:9092",
        "secrets.existingSecret=taobao-connector-credentials",
    ]
    values: dict[str, Any] = {}
    for flag in flags:
        values = merge(values, helm.parse_set_string(flag))
    assert values["taobao"]["appKey"] == 12345678  # a number, as Helm would pass it

    env = environment(manifests(chart, values))

    assert env["TAOBAO_APP_KEY"] == "12345678"


def test_rollouts_do_not_surge_and_drains_can_evict_unready_pods(chart: Any) -> None:
    docs = manifests(chart, merge(REQUIRED, FEATURES["pdb"], FEATURES["keda"]))

    strategy = one(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}
    assert one(docs, "PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    scaled = one(docs, "ScaledObject")
    assert {t["metadata"]["offsetResetPolicy"] for t in scaled["spec"]["triggers"]} == {"earliest"}
