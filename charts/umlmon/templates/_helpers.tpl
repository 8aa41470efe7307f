{{/* Names and labels shared by every object of the chart. */}}

{{/* The chart's name, or nameOverride. */}}
{{- define "umlmon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object name prefix: fullnameOverride, else the release name when it already contains
the chart's name, else "<release>-<chart>"; 63 characters at most (DNS label). */}}
{{- define "umlmon.fullname" -}}
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

{{/* "umlmon-0.1.0", for the helm.sh/chart label. */}}
{{- define "umlmon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. helm.sh/chart and app.kubernetes.io/managed-by are Helm's own:
manifests/ carries the others (docs/install.md). */}}
{{- define "umlmon.labels" -}}
helm.sh/chart: {{ include "umlmon.chart" . }}
{{ include "umlmon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: umlmon
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the agent's pods; never change them in an upgrade (DaemonSet selectors
are immutable). */}}
{{- define "umlmon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "umlmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the agent runs as. */}}
{{- define "umlmon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "umlmon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "umlmon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* stateDir without a trailing slash, and the backup directory it implies. */}}
{{- define "umlmon.stateDir" -}}
{{- if eq .Values.stateDir "/" }}{{ fail "stateDir must not be / (the agent owns everything under it)" }}{{ end }}
{{- trimSuffix "/" .Values.stateDir }}
{{- end }}

{{- define "umlmon.backupDir" -}}
{{- default (printf "%s/backups" (include "umlmon.stateDir" .)) (trimSuffix "/" .Values.backupDir) }}
{{- end }}

{{/* "true" when a path lies outside stateDir and so needs a hostPath volume of its own. */}}
{{- define "umlmon.outsideStateDir" -}}
{{- $stateDir := printf "%s/" (include "umlmon.stateDir" .root) }}
{{- if not (hasPrefix $stateDir (printf "%s/" (trimSuffix "/" .path))) }}true{{ end }}
{{- end }}

{{/* The agent's config file (docs/configuration.md): the chart-owned keys, then .Values.config. */}}
{{- define "umlmon.config" -}}
{{- $owned := dict
  "source" "kubernetes"
  "stateDir" (include "umlmon.stateDir" .)
  "imageRoot" (trimSuffix "/" .Values.imageRoot)
  "backupDir" (include "umlmon.backupDir" .)
  "control" (printf "unix://%s/control.sock" (include "umlmon.stateDir" .))
  "listen" (printf ":%d" (int .Values.metrics.port))
  "kernels" .Values.kernels
  "logLevel" .Values.logLevel
}}
{{- toYaml (merge $owned (deepCopy .Values.config)) }}
{{- end }}
