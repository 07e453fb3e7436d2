{{/*
Names are fixed (kanaria-operator, ...) rather than derived from the release
name: the chart installs cluster-wide objects (CRD, ClusterRole), so one
release per cluster is the supported layout, and the objects then match
manifests/operator exactly (a test compares them).
*/}}

{{/* Labels Helm adds on top of the manifests' labels. */}}
{{- define "kanaria.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every operator object (as in manifests/operator). */}}
{{- define "kanaria.operatorLabels" -}}
app.kubernetes.io/name: kanaria-operator
app.kubernetes.io/part-of: kanaria
{{ include "kanaria.helmLabels" . }}
{{- end -}}

{{/* Labels of the monitoring objects (as in manifests/monitoring). */}}
{{- define "kanaria.monitoringLabels" -}}
app.kubernetes.io/name: kanaria
app.kubernetes.io/part-of: kanaria
{{ include "kanaria.helmLabels" . }}
{{- end -}}

{{/* "repository:tag" with the tag defaulting to the chart's appVersion. */}}
{{- define "kanaria.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository (toString $tag) -}}
{{- end -}}

{{- define "kanaria.operatorImage" -}}
{{- include "kanaria.image" (dict "image" .Values.operator.image "root" .) -}}
{{- end -}}

{{/* The one pull policy the operator applies to the pods it creates. */}}
{{- define "kanaria.dataPlanePullPolicy" -}}
{{- if ne .Values.router.image.pullPolicy .Values.modelServer.image.pullPolicy -}}
{{- fail (printf "router.image.pullPolicy (%s) and modelServer.image.pullPolicy (%s) must be equal: the operator applies one pull policy to every pod it creates" .Values.router.image.pullPolicy .Values.modelServer.image.pullPolicy) -}}
{{- end -}}
{{- .Values.modelServer.image.pullPolicy -}}
{{- end -}}
