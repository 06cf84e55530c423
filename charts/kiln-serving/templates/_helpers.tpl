{{/* Names: the release name when it already contains the chart's, else <release>-<chart>. */}}
{{- define "kiln-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kiln-serving.fullname" -}}
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

{{- define "kiln-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels never carry a version: a Deployment's selector is immutable. */}}
{{- define "kiln-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kiln-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kiln-serving.labels" -}}
helm.sh/chart: {{ include "kiln-serving.chart" . }}
{{ include "kiln-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ include "kiln-serving.imageTag" . | quote }}
app.kubernetes.io/component: serving
app.kubernetes.io/part-of: kiln
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kiln-serving.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "kiln-serving.image" -}}
{{- printf "%s:%s" (required "image.repository is required" .Values.image.repository) (include "kiln-serving.imageTag" .) }}
{{- end }}

{{- define "kiln-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kiln-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The grace period: what was set, or the sum of the drain phases plus a margin. */}}
{{- define "kiln-serving.gracePeriod" -}}
{{- $s := .Values.shutdown }}
{{- $need := add $s.preStopSleepSeconds $s.shutdownDelaySeconds $s.drainSeconds }}
{{- if $s.terminationGracePeriodSeconds }}
{{- if lt (int $s.terminationGracePeriodSeconds) (int $need) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) is shorter than preStopSleepSeconds + shutdownDelaySeconds + drainSeconds (%v): pods would be killed while draining" $s.terminationGracePeriodSeconds $need) }}
{{- end }}
{{- $s.terminationGracePeriodSeconds }}
{{- else }}
{{- add $need 5 }}
{{- end }}
{{- end }}

{{/* The route prefix without a trailing slash, checked to start with one. */}}
{{- define "kiln-serving.pathPrefix" -}}
{{- $p := required "istio.pathPrefix is required" .Values.istio.pathPrefix | trimSuffix "/" }}
{{- if not (hasPrefix "/" $p) }}
{{- fail (printf "istio.pathPrefix %q must start with /" .Values.istio.pathPrefix) }}
{{- end }}
{{- $p }}
{{- end }}
