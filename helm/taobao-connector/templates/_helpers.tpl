{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "taobao-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart> unless the release name already contains the chart name.
*/}}
{{- define "taobao-connector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "taobao-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "taobao-connector.labels" -}}
helm.sh/chart: {{ include "taobao-connector.chart" . }}
{{ include "taobao-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: connector
app.kubernetes.io/part-of: taobao-connector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "taobao-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taobao-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "taobao-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taobao-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "taobao-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the pods read: the user's existing one, or the chart's.
*/}}
{{- define "taobao-connector.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "taobao-connector.fullname" . }}
{{- end }}
{{- end }}

{{- define "taobao-connector.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) .Values.secrets.create }}true{{ end }}
{{- end }}

{{- define "taobao-connector.otelServiceName" -}}
{{- default (include "taobao-connector.fullname" .) .Values.otel.serviceName }}
{{- end }}

{{- define "taobao-connector.kafkaTlsDir" -}}/etc/taobao-connector/kafka-tls{{- end }}
{{- define "taobao-connector.redisTlsDir" -}}/etc/taobao-connector/redis-tls{{- end }}

{{- define "taobao-connector.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.connector.shutdownTimeoutS | int64) (.Values.terminationGraceMarginSeconds | int64) }}
{{- end }}

{{/*
An environment value as the connector parses it. Helm holds every number as a float64,
which `quote` prints as 1.2096e+06: whole numbers are printed as integers instead; maps
and lists become JSON (TAOBAO_METHOD_QPS, KAFKA_EXTRA_CONFIG).
*/}}
{{- define "taobao-connector.envValue" -}}
{{- $v := . }}
{{- if kindIs "float64" $v }}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "map" $v) (kindIs "slice" $v) }}
{{- toJson $v }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/*
One `  NAME: "value"` line of a ConfigMap's data (indented by two, led by a newline), only
when the value is set: null, "" and an empty map mean "not set", so the connector's own
default applies. Call with (list "NAME" value).
*/}}
{{- define "taobao-connector.envLine" -}}
{{- $name := index . 0 }}
{{- $value := index . 1 }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) (and (kindIs "map" $value) (empty $value))) }}
{{ printf "  %s: %s" $name (include "taobao-connector.envValue" $value | quote) }}
{{- end }}
{{- end }}

{{/*
Same, base64-encoded for a Secret's data.
*/}}
{{- define "taobao-connector.secretLine" -}}
{{- $name := index . 0 }}
{{- $value := index . 1 }}
{{- if $value }}
{{ printf "  %s: %s" $name ($value | toString | b64enc | quote) }}
{{- end }}
{{- end }}

{{/*
The REDIS_URL the chart stores: with redis.tls on, a rediss:// URL without ssl_ca_certs
gets the mounted CA's path.
*/}}
{{- define "taobao-connector.redisUrl" -}}
{{- $url := .Values.secrets.redisUrl | default "" }}
{{- if and $url .Values.redis.tls.enabled }}
{{- if not (hasPrefix "rediss://" $url) }}
{{- fail "redis.tls.enabled needs a rediss:// URL in secrets.redisUrl" }}
{{- end }}
{{- if not (contains "ssl_ca_certs=" $url) }}
{{- $url = printf "%s%sssl_ca_certs=%s/%s" $url (ternary "&" "?" (contains "?" $url)) (include "taobao-connector.redisTlsDir" .) .Values.redis.tls.caKey }}
{{- end }}
{{- end }}
{{- $url }}
{{- end }}

{{/*
Checks the schema cannot express (it sees values, not their combination with templates).
*/}}
{{- define "taobao-connector.validate" -}}
{{- if and .Values.hpa.enabled .Values.keda.enabled }}
{{- fail "hpa.enabled and keda.enabled are mutually exclusive: KEDA creates its own HorizontalPodAutoscaler, and two autoscalers on one Deployment fight" }}
{{- end }}
{{- if le (.Values.connector.httpPort | int) 0 }}
{{- fail "connector.httpPort must be a port (1-65535): the probes, Service and NetworkPolicy use it" }}
{{- end }}
{{- end }}
