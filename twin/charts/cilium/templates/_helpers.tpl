{{/* Labels every object of the release carries. */}}
{{- define "cilium.commonLabels" -}}
app.kubernetes.io/part-of: cilium
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The routing mode the agent runs with: the value, else native for ENI, else tunnel. */}}
{{- define "cilium.routingMode" -}}
{{- if .Values.routingMode -}}
{{ .Values.routingMode }}
{{- else if .Values.eni.enabled -}}
native
{{- else -}}
tunnel
{{- end -}}
{{- end }}

{{/* The operator image: operator-aws for ENI IPAM, operator-generic otherwise (as the real chart). */}}
{{- define "cilium.operator.image" -}}
{{- $variant := ternary "aws" "generic" (eq .Values.ipam.mode "eni") -}}
{{ printf "%s-%s:%s" .Values.operator.image.repository $variant .Values.operator.image.tag }}
{{- end }}

{{/* Checksum of the rendered cilium-config: a change of it rolls the pods that carry it. */}}
{{- define "cilium.configChecksum" -}}
{{ include (print $.Template.BasePath "/cilium-configmap.yaml") . | sha256sum }}
{{- end }}
