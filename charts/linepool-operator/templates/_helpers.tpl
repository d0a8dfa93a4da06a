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
{{- $placement := .Values.placement }}
{{- if $placement.enabled }}
{{- /* values.schema.json refuses this already; repeated for --skip-schema-validation. */}}
{{- if and (gt (int $placement.replicas) 1) (include "linepool-operator.placement.sqlite" .) }}
{{- fail (printf "placement.replicas (%d) needs PostgreSQL: SQLite is one file that only one pod may write. Set placement.database.existingSecret (a Secret with a postgresql:// URL) or a postgresql:// placement.database.url, or placement.replicas=1." (int $placement.replicas)) }}
{{- end }}
{{- $ppdb := $placement.podDisruptionBudget }}
{{- if and $ppdb.enabled (gt (int $placement.replicas) 1) (not (kindIs "string" $ppdb.minAvailable)) (ge (int $ppdb.minAvailable) (int $placement.replicas)) }}
{{- fail (printf "placement.podDisruptionBudget.minAvailable (%d) must be below placement.replicas (%d): otherwise no placement pod may ever be evicted and node drains hang." (int $ppdb.minAvailable) (int $placement.replicas)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The placement service (`linepool serve`): `<fullname>-placement`, the prefix of its objects.
*/}}
{{- define "linepool-operator.placement.fullname" -}}
{{- printf "%s-placement" (include "linepool-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of the placement service's objects: the chart's labels with component `placement`.
*/}}
{{- define "linepool-operator.placement.labels" -}}
helm.sh/chart: {{ include "linepool-operator.chart" . }}
{{ include "linepool-operator.placement.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: placement
app.kubernetes.io/part-of: linepool-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the placement pods. Their `app.kubernetes.io/name` is `<name>-placement`: the
operator's selector (name and instance, immutable) would otherwise match the placement pods too,
and its Service, NetworkPolicy and PodDisruptionBudget would apply to them.
*/}}
{{- define "linepool-operator.placement.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-placement" (include "linepool-operator.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The placement service's ServiceAccount name.
*/}}
{{- define "linepool-operator.placement.serviceAccountName" -}}
{{- if .Values.placement.serviceAccount.create }}
{{- default (include "linepool-operator.placement.fullname" .) .Values.placement.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.placement.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
True (non-empty) when the placement store is SQLite: no database.existingSecret (which holds a
PostgreSQL URL) and a sqlite: database.url. SQLite means one replica, a Recreate strategy and the
persistence volume at /var/lib/linepool.
*/}}
{{- define "linepool-operator.placement.sqlite" -}}
{{- $db := .Values.placement.database }}
{{- if and (not $db.existingSecret) (hasPrefix "sqlite:" $db.url) }}true{{ end }}
{{- end }}

{{/*
The base URL of the short links: placement.publicURL, else the in-cluster Service URL.
*/}}
{{- define "linepool-operator.placement.publicURL" -}}
{{- if .Values.placement.publicURL }}
{{- .Values.placement.publicURL | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "linepool-operator.placement.fullname" .) .Release.Namespace (int .Values.placement.service.port) }}
{{- end }}
{{- end }}
