{{/*
Names: Kubernetes names are at most 63 characters (DNS labels), so every name is truncated.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "tokenwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name: fullnameOverride, or release-chart (just the release when it already contains the chart name). */}}
{{- define "tokenwire.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label (`+` is not allowed in label values). */}}
{{- define "tokenwire.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "tokenwire.labels" -}}
helm.sh/chart: {{ include "tokenwire.chart" . }}
{{ include "tokenwire.selectorLabels" . }}
app.kubernetes.io/version: {{ include "tokenwire.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the server pods; never change them on upgrade (selectors are immutable). */}}
{{- define "tokenwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "tokenwire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tokenwire.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag, or appVersion (+ "-gpu" for the gpu variant). Never `latest`: a
moving tag makes rollbacks and node caches lie about what runs. */}}
{{- define "tokenwire.imageTag" -}}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion (ternary "-gpu" "" (eq .Values.image.variant "gpu"))) }}
{{- if or (eq $tag "latest") (hasSuffix ":latest" $tag) }}
{{- fail "image.tag must not be `latest`: pin a version (empty means the chart's appVersion)" }}
{{- end }}
{{- $tag }}
{{- end }}

{{/* repository:tag */}}
{{- define "tokenwire.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "tokenwire.imageTag" .) }}
{{- end }}

{{/* TOKENWIRE_HOME inside the pods: a writable volume (prepared models, toolchain scratch). */}}
{{- define "tokenwire.home" -}}
/var/lib/tokenwire
{{- end }}

{{/* The model directory the server serves; empty for `model.source: none`. */}}
{{- define "tokenwire.modelDir" -}}
{{- if eq .Values.model.source "image" }}
{{- printf "%s/%s" (trimSuffix "/" .Values.model.imagePath) .Values.model.name }}
{{- else if ne .Values.model.source "none" }}
{{- printf "%s/models/%s" (include "tokenwire.home" .) .Values.model.name }}
{{- end }}
{{- end }}

{{/* The model id clients name: the prepared model's name, or (no model dir) the backend's own. */}}
{{- define "tokenwire.servedModel" -}}
{{- if eq .Values.model.source "none" }}
{{- .Values.server.backendOptions.model | default .Values.server.backend }}
{{- else }}
{{- .Values.model.name }}
{{- end }}
{{- end }}

{{/* Path of the server's TOML config inside the container. */}}
{{- define "tokenwire.configPath" -}}
/etc/tokenwire/tokenwire.toml
{{- end }}

{{/*
The timeout chain (docs/deploy-kubernetes.md):
  drain grace < server shutdown (drain grace + shutdown timeout + 1 s abort flush)
              < terminationGracePeriodSeconds - preStopSleepSeconds.
Kubernetes counts the grace period from the start of the preStop hook, and uvicorn rounds
the shutdown timeout up to whole seconds, so both go into the sum. Values that break the
chain fail the render: a pod killed mid-drain cuts every stream it still carries.
*/}}
{{- define "tokenwire.validateTimeouts" -}}
{{- $drain := float64 .Values.server.drainGraceSeconds }}
{{- $shutdown := ceil (float64 .Values.server.shutdownTimeoutSeconds) }}
{{- $preStop := float64 .Values.preStopSleepSeconds }}
{{- $grace := float64 .Values.terminationGracePeriodSeconds }}
{{- $abortFlush := 1.0 }}
{{- $serverStop := addf $drain $shutdown $abortFlush }}
{{- if le $shutdown 0.0 }}
{{- fail (printf "timeout chain broken: server.shutdownTimeoutSeconds (%v) must be > 0, so the server's shutdown outlasts the drain grace" .Values.server.shutdownTimeoutSeconds) }}
{{- end }}
{{- if not (lt (addf $preStop $serverStop) $grace) }}
{{- fail (printf "timeout chain broken: terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds (%v) + server.drainGraceSeconds (%v) + server.shutdownTimeoutSeconds (%v, rounded up) + 1 s abort flush = %v" .Values.terminationGracePeriodSeconds .Values.preStopSleepSeconds .Values.server.drainGraceSeconds .Values.server.shutdownTimeoutSeconds (addf $preStop $serverStop)) }}
{{- end }}
{{- end }}

{{/* Values that only make sense together. */}}
{{- define "tokenwire.validateValues" -}}
{{- include "tokenwire.validateTimeouts" . }}
{{- $metrics := has "metrics" .Values.server.middlewares }}
{{- if and .Values.serviceMonitor.enabled (not $metrics) }}
{{- fail "serviceMonitor.enabled needs the `metrics` middleware in server.middlewares (it serves /metrics)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.autoscaling.queueDepth.enabled (not $metrics) }}
{{- fail "autoscaling.queueDepth.enabled needs the `metrics` middleware in server.middlewares (it exports tokenwire_requests_waiting)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled exclude each other: KEDA creates its own HPA, and two would fight over the replica count" }}
{{- end }}
{{- if and .Values.keda.enabled (not $metrics) }}
{{- fail "keda.enabled needs the `metrics` middleware in server.middlewares (its query reads the waiting-requests gauge)" }}
{{- end }}
{{- if and .Values.keda.enabled (not (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) }}
{{- fail "keda.enabled needs KEDA's keda.sh/v1alpha1 API in the cluster (with `helm template`, pass --api-versions keda.sh/v1alpha1)" }}
{{- end }}
{{- if and .Values.inferencePool.enabled (not $metrics) }}
{{- fail "inferencePool.enabled needs the `metrics` middleware in server.middlewares: the endpoint picker routes on /metrics" }}
{{- end }}
{{- if and (eq .Values.model.source "existingClaim") (not .Values.model.existingClaim.claimName) }}
{{- fail "model.source=existingClaim needs model.existingClaim.claimName" }}
{{- end }}
{{- end }}

{{/* Pod labels an InferencePool selects on (inferencePool.enabled): the endpoint picker's
engine label, and the pool's selector labels (by default the served model's name). */}}
{{- define "tokenwire.inferencePoolLabels" -}}
llm-d.ai/engine-type: {{ .Values.inferencePool.engineType | quote }}
{{- with .Values.inferencePool.selectorLabels }}
{{ toYaml . }}
{{- else }}
llm-d.ai/model: {{ .Values.model.name | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
{{- end }}
