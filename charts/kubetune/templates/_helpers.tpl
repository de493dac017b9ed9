{{/* Names, labels, images and the storage Secret: shared by every template. */}}

{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: `<release>` when it contains the chart name, else `<release>-<chart>`. */}}
{{- define "kubetune.fullname" -}}
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

{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubetune.labels" -}}
helm.sh/chart: {{ include "kubetune.chart" . }}
{{ include "kubetune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "kubetune.componentLabels" -}}
{{ include "kubetune.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubetune.componentSelector" -}}
{{ include "kubetune.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to the appVersion:
     (dict "image" .Values.image "ctx" $). */}}
{{- define "kubetune.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "kubetune.operator.fullname" -}}
{{- printf "%s-operator" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Empty when the trial pods use each namespace's "default" ServiceAccount. */}}
{{- define "kubetune.trial.serviceAccountName" -}}
{{- if .Values.trialServiceAccount.create }}
{{- default (printf "%s-trial" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-") .Values.trialServiceAccount.name }}
{{- else }}
{{- .Values.trialServiceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubetune.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetune.dashboard.fullname" -}}
{{- printf "%s-dashboard" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The in-cluster host of the chart's PostgreSQL, qualified with the namespace so that the
     URL also works from trial pods in other namespaces (the operator copies it there). */}}
{{- define "kubetune.postgresql.host" -}}
{{- printf "%s.%s.svc" (include "kubetune.postgresql.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Fail early, with a message naming the values, on combinations the schema cannot express. */}}
{{- define "kubetune.validate" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.externalDatabase.existingSecret) }}
{{- fail "postgresql.enabled is false, so externalDatabase.existingSecret must name a Secret (in the release namespace) holding the database URL" }}
{{- end }}
{{- if and .Values.postgresql.enabled .Values.externalDatabase.existingSecret }}
{{- fail "externalDatabase.existingSecret is set while postgresql.enabled is true; set postgresql.enabled=false to use the external database" }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (eq .Values.operator.peering.mode "never") }}
{{- fail (printf "operator.replicas is %d but operator.peering.mode is never: replicas without peering would all handle the same Studies" (int .Values.operator.replicas)) }}
{{- end }}
{{- end }}

{{/* The Secret and key holding the default database URL: the generated one, an existing
     PostgreSQL Secret, or the external database's. */}}
{{- define "kubetune.storage.secretName" -}}
{{- if not .Values.postgresql.enabled }}
{{- .Values.externalDatabase.existingSecret }}
{{- else if .Values.postgresql.auth.existingSecret }}
{{- .Values.postgresql.auth.existingSecret }}
{{- else }}
{{- include "kubetune.postgresql.fullname" . }}
{{- end }}
{{- end }}

{{- define "kubetune.storage.secretKey" -}}
{{- if not .Values.postgresql.enabled }}
{{- .Values.externalDatabase.existingSecretKey }}
{{- else if .Values.postgresql.auth.existingSecret }}
{{- .Values.postgresql.auth.secretKeys.urlKey }}
{{- else -}}
url
{{- end }}
{{- end }}

{{- define "kubetune.postgresql.passwordSecretName" -}}
{{- default (include "kubetune.postgresql.fullname" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{- define "kubetune.postgresql.passwordKey" -}}
{{- if .Values.postgresql.auth.existingSecret }}
{{- .Values.postgresql.auth.secretKeys.passwordKey }}
{{- else -}}
password
{{- end }}
{{- end }}

{{/* The env var every storage client gets: the URL straight from the Secret, never in a manifest. */}}
{{- define "kubetune.storage.env" -}}
- name: KUBETUNE_STORAGE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetune.storage.secretName" . }}
      key: {{ include "kubetune.storage.secretKey" . }}
{{- end }}

{{/* Peering: on with several replicas (Kopf needs it to see the others), or when asked. */}}
{{- define "kubetune.peering.enabled" -}}
{{- $mode := .Values.operator.peering.mode }}
{{- if or (eq $mode "always") (and (eq $mode "auto") (gt (int .Values.operator.replicas) 1)) -}}
true
{{- end }}
{{- end }}
