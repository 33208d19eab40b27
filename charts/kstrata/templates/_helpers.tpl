{{/*
Object names are fixed (kstrata, kstrata:app, kstrata-webhook, kstrata.dev...):
the operator looks its Services, webhook configuration and peering object up by
these names, so one release per cluster.
*/}}

{{- define "kstrata.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* Labels every object gets (besides its own): kustomize's part-of and Helm's. */}}
{{- define "kstrata.commonLabels" -}}
app.kubernetes.io/part-of: kstrata
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kstrata.labels" -}}
{{ include "kstrata.commonLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kstrata.selectorLabels" -}}
app.kubernetes.io/name: kstrata
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kstrata.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The ServiceAccount as an RBAC subject. */}}
{{- define "kstrata.subject" -}}
- kind: ServiceAccount
  name: kstrata
  namespace: {{ include "kstrata.namespace" . }}
{{- end -}}
