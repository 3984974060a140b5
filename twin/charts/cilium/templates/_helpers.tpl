{{/*
Helpers of the stand-in. Their logic follows cilium 1.16.5's helpers where an outcome depends on it.
*/}}

{{/* The chart label value: name-version, "+" made label-safe. */}}
{{- define "cilium.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
An image reference from an image values block (repository, tag, digest, useDigest, override):
the override as given, else repository:tag, with @digest when useDigest.
Usage: include "cilium.image" .Values.image
*/}}
{{- define "cilium.image" -}}
{{- if .override -}}
{{- .override -}}
{{- else -}}
{{- $digest := (.useDigest | default false) | ternary (printf "@%s" .digest) "" -}}
{{- printf "%s:%s%s" .repository .tag $digest -}}
{{- end -}}
{{- end -}}

{{/*
The priority class: the one given, else the critical class when enableCriticalPriorityClass.
Usage: include "cilium.priorityClass" (list $ <priorityClassName> <criticalPriorityClass>)
*/}}
{{- define "cilium.priorityClass" -}}
{{- $root := index . 0 -}}
{{- $priorityClass := index . 1 -}}
{{- $critical := index . 2 -}}
{{- if $priorityClass -}}
{{- $priorityClass -}}
{{- else if and $root.Values.enableCriticalPriorityClass $critical -}}
{{- $critical -}}
{{- end -}}
{{- end -}}

{{/*
Whether the cluster is older than Kubernetes 1.30, the release that added the appArmorProfile field
(pod and container securityContext) and deprecated the AppArmor annotations. As the real chart, only
major.minor count (an EKS "v1.29.15-eks-..." is 1.29.0), and the version is Helm's view of the cluster:
.Capabilities.KubeVersion, read from the API server's /version by an install or upgrade.
Renders "true" or "false".
*/}}
{{- define "cilium.kubeBefore130" -}}
{{- $kube := semver .Capabilities.KubeVersion.Version -}}
{{- semverCompare "<1.30.0" (printf "%d.%d.0" $kube.Major $kube.Minor) -}}
{{- end -}}

{{/*
The certificate authority of the chart's "helm" certificate method, set once per render in the
root context as .commonCA (and .commonCASecretName). Order, as cilium's cilium.ca.setup:
1. tls.ca.cert and tls.ca.key when both are given;
2. else the CA in the existing Secret cilium-ca of the release namespace (lookup: kept across
   upgrades; an offline render or a --dry-run=client finds nothing);
3. else a new self-signed "Cilium CA" valid tls.ca.certValidityDuration days.
Usage: {{- $_ := include "cilium.ca.setup" . -}}
*/}}
{{- define "cilium.ca.setup" }}
  {{- if not .commonCA -}}
    {{- $ca := "" -}}
    {{- $secretName := "cilium-ca" -}}
    {{- $crt := .Values.tls.ca.cert -}}
    {{- $key := .Values.tls.ca.key -}}
    {{- if and $crt $key }}
      {{- $ca = buildCustomCert $crt $key -}}
    {{- else }}
      {{- with lookup "v1" "Secret" .Release.Namespace $secretName }}
        {{- $ca = buildCustomCert (index .data "ca.crt") (index .data "ca.key") -}}
      {{- else }}
        {{- $ca = genCA "Cilium CA" (.Values.tls.ca.certValidityDuration | int) -}}
      {{- end }}
    {{- end -}}
    {{- $_ := set (set . "commonCA" $ca) "commonCASecretName" $secretName -}}
  {{- end -}}
{{- end -}}

{{/* Whether Hubble's certificates come from this chart (method "helm"): "true" or "". */}}
{{- define "cilium.hubble.helmCerts" -}}
{{- if and .Values.hubble.enabled .Values.hubble.tls.enabled .Values.hubble.tls.auto.enabled (eq .Values.hubble.tls.auto.method "helm") -}}
true
{{- end -}}
{{- end -}}

{{/*
Whether cilium-envoy runs as its own DaemonSet: never without l7Proxy; envoy.enabled when set; else
yes for charts from 1.16 on (upgradeCompatibility lets an upgrade keep an older chart's default).
Renders "true" or "false".
*/}}
{{- define "envoyDaemonSetEnabled" -}}
{{- if not .Values.l7Proxy -}}
false
{{- else if not (kindIs "invalid" .Values.envoy.enabled) -}}
{{- .Values.envoy.enabled -}}
{{- else -}}
{{- semverCompare ">=1.16" (default "1.16" .Values.upgradeCompatibility) -}}
{{- end -}}
{{- end -}}

{{/* The operator's cloud flavour: aws with ENI, azure, alibabacloud, else generic (image and command). */}}
{{- define "cilium.operator.cloud" -}}
{{- if .Values.eni.enabled -}}
aws
{{- else if .Values.azure.enabled -}}
azure
{{- else if .Values.alibabacloud.enabled -}}
alibabacloud
{{- else -}}
generic
{{- end -}}
{{- end -}}

{{/* The operator image: <repository>-<cloud><suffix>:<tag>[@<cloud's digest>], or the override. */}}
{{- define "cilium.operator.image" -}}
{{- if .Values.operator.image.override -}}
{{- .Values.operator.image.override -}}
{{- else -}}
{{- $cloud := include "cilium.operator.cloud" . -}}
{{- $digests := dict "aws" .Values.operator.image.awsDigest "azure" .Values.operator.image.azureDigest "alibabacloud" .Values.operator.image.alibabacloudDigest "generic" .Values.operator.image.genericDigest -}}
{{- $digest := (.Values.operator.image.useDigest | default false) | ternary (printf "@%s" (get $digests $cloud)) "" -}}
{{- printf "%s-%s%s:%s%s" .Values.operator.image.repository $cloud .Values.operator.image.suffix .Values.operator.image.tag $digest -}}
{{- end -}}
{{- end -}}

{{/* A duration that is not zero ("5m0s": yes, "0s": no): renders it, or nothing. */}}
{{- define "hasDuration" -}}
{{- $now := now -}}
{{- if ne $now ($now | dateModify (toString .)) -}}
{{- . -}}
{{- end -}}
{{- end -}}
