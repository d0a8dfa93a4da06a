{{/*
The chart's name: `linepool-operator`, or nameOverride.
*/}}
{{- define "linepool-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name that prefixes every resource: fullnameOverride, else `<release>-<name>`, or just the
release name when it already contains the chart name. Truncated to 63 characters (DNS labels).
*/}}
{{- define "linepool-operator.fullname" -}}
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

{{/*
`<chart>-<version>`, for the helm.sh/chart label.
*/}}
{{- define "linepool-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource the chart creates.
*/}}
{{- define "linepool-operator.labels" -}}
helm.sh/chart: {{ include "linepool-operator.chart" . }}
{{ include "linepool-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: linepool-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator's pods (immutable in a Deployment/StatefulSet: never add to them).
*/}}
{{- define "linepool-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "linepool-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "linepool-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "linepool-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: `repository@digest` when a digest is given, else `repository:tag` with the tag
defaulting to the chart's appVersion.
*/}}
{{- define "linepool-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
True (non-empty) when the operator watches the whole cluster.
*/}}
{{- define "linepool-operator.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
Kind of the workload: one replica runs as a Deployment; two or more as a StatefulSet, whose stable
pod ordinals give every replica its own kopf peering priority (replicas with equal priorities
would all pause).
*/}}
{{- define "linepool-operator.workloadKind" -}}
{{- if gt (int .Values.replicaCount) 1 }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/*
Checks the schema cannot express; `fail` stops install, upgrade and template with the message.
*/}}
{{- define "linepool-operator.validate" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (gt (int .Values.replicaCount) 1) (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicaCount (%d): otherwise no operator pod may ever be evicted and node drains hang." (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
