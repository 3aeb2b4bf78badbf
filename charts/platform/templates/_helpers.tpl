{{/* Labels every object of this chart carries. */}}
{{- define "platform.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: data-platform
{{- end -}}

{{/* Selector labels of one component: (list $ "component"). */}}
{{- define "platform.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Host and port of the PostgreSQL server: the in-cluster one, else the managed one. */}}
{{- define "platform.postgresHost" -}}
{{- if .Values.postgres.enabled -}}
{{ .Values.postgres.name }}
{{- else -}}
{{ required "postgres.external.host is required when postgres.enabled is false" .Values.postgres.external.host }}
{{- end -}}
{{- end -}}

{{- define "platform.postgresPort" -}}
{{- if .Values.postgres.enabled -}}
{{ .Values.postgres.port }}
{{- else -}}
{{ .Values.postgres.external.port }}
{{- end -}}
{{- end -}}

{{/* The postgres image (server, psql, pg_isready). */}}
{{- define "platform.postgresImage" -}}
{{ .Values.postgres.image.repository }}:{{ .Values.postgres.image.tag }}
{{- end -}}

{{/*
Security context of every pod of this chart: the "restricted" Pod Security Standard, as the
postgres user of the official image (uid/gid 999).
*/}}
{{- define "platform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.postgres.uid }}
runAsGroup: {{ .Values.postgres.gid }}
fsGroup: {{ .Values.postgres.gid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "platform.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Every Secret the platform relies on, by name (deduplicated, sorted). */}}
{{- define "platform.secretNames" -}}
{{- $names := list .Values.secrets.postgresAdmin .Values.secrets.dagsterStorage -}}
{{- range .Values.warehouseRoles }}
{{- $names = append $names .secret -}}
{{- end }}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}
