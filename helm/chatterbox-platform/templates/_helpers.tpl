{{/* Resource name prefix: "<release>-<chart>" unless overridden, shortened for DNS labels. */}}
{{- define "chatterbox.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "chatterbox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object; "component" tells operator, web UI and monitoring objects apart. */}}
{{- define "chatterbox.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatterbox-platform
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "chatterbox.selectorLabels" . }}
{{- end -}}

{{- define "chatterbox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatterbox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chatterbox.operatorName" -}}
{{- printf "%s-operator" (include "chatterbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatterbox.webuiName" -}}
{{- printf "%s-webui" (include "chatterbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatterbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chatterbox.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "repository:tag", the tag defaulting to the chart's appVersion. Call with (list .Values.x.image .). */}}
{{- define "chatterbox.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* The inference Service the web UI and the Ingress send API calls to. */}}
{{- define "chatterbox.apiService" -}}
{{- default .Values.ttsDeployment.name .Values.webui.apiService -}}
{{- end -}}

{{/*
A ClusterRole (namespace "") or a Role in one namespace, with its binding to one ServiceAccount.
Call with (dict "root" $ "name" NAME "namespace" NS "rules" RULES-YAML "serviceAccount" SA
"component" COMPONENT "annotations" DICT-or-nil).
*/}}
{{- define "chatterbox.roleWithBinding" -}}
{{- $kind := ternary "Role" "ClusterRole" (ne .namespace "") -}}
{{- range $object := list $kind (printf "%sBinding" $kind) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $object }}
metadata:
  name: {{ $.name }}
  {{- with $.namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "chatterbox.labels" $.root | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
  {{- with $.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- if eq $object $kind }}
rules:
  {{- $.rules | nindent 2 }}
{{- else }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $kind }}
  name: {{ $.name }}
subjects:
  - kind: ServiceAccount
    name: {{ $.serviceAccount }}
    namespace: {{ $.root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end -}}
