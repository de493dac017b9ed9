{{/* The connection pooler (PgBouncer) between trial pods and PostgreSQL: pooler-*.yaml. */}}

{{- define "kubetune.pooler.fullname" -}}
{{- printf "%s-pooler" (include "kubetune.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "true" when the pooler is deployed: asked for, with tenants (PgBouncer looks up each
     namespace's role; it will not look up the operator's superuser), and with a server to
     pool: the bundled PostgreSQL, or pooler.server.host for a database of your own. */}}
{{- define "kubetune.pooler.enabled" -}}
{{- if and .Values.pooler.enabled .Values.tenants.enabled (or .Values.postgresql.enabled .Values.pooler.server.host) -}}
true
{{- end }}
{{- end }}

{{/* The pooler's in-cluster host, qualified with the namespace: trial pods in every
     namespace reach it (the operator puts it in their storage URL). */}}
{{- define "kubetune.pooler.host" -}}
{{- printf "%s.%s.svc" (include "kubetune.pooler.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "kubetune.pooler.serverHost" -}}
{{- default (include "kubetune.postgresql.host" .) .Values.pooler.server.host }}
{{- end }}

{{- define "kubetune.pooler.serverPort" -}}
{{- if .Values.pooler.server.host }}
{{- .Values.pooler.server.port }}
{{- else }}
{{- .Values.postgresql.service.port }}
{{- end }}
{{- end }}

{{/* The Secret holding the lookup role's password and PgBouncer's userlist.txt: the
     generated one, or pooler.auth.existingSecret. */}}
{{- define "kubetune.pooler.secretName" -}}
{{- default (include "kubetune.pooler.fullname" .) .Values.pooler.auth.existingSecret }}
{{- end }}
