{{- define "selfguide.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: "<release>-selfguide", or the release name when it contains "selfguide". */}}
{{- define "selfguide.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "selfguide.selectorLabels" -}}
app.kubernetes.io/name: {{ include "selfguide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "selfguide.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "selfguide.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "selfguide.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "selfguide.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "selfguide.subjects" -}}
- kind: ServiceAccount
  name: {{ include "selfguide.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* "repository:tag" of an image value, the tag defaulting to the chart's appVersion. */}}
{{- define "selfguide.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The namespaces a namespaced install watches (watchNamespaces, else the release namespace); [] cluster-wide. */}}
{{- define "selfguide.watchNamespaces" -}}
{{- if .Values.clusterWide }}
{{- if .Values.watchNamespaces }}
{{- fail "clusterWide: true watches every namespace: leave watchNamespaces empty" }}
{{- end }}
{{- toJson (list) }}
{{- else }}
{{- toJson (default (list .Release.Namespace) .Values.watchNamespaces) }}
{{- end }}
{{- end }}

{{/* The namespaces the chart creates per-namespace objects in: the watched ones, else the release namespace. */}}
{{- define "selfguide.namespaces" -}}
{{- toJson (default (list .Release.Namespace) (include "selfguide.watchNamespaces" . | fromJsonArray)) }}
{{- end }}

{{/*
What the operator does with namespaced objects (selfguide_operator/kube.py and kopf, see docs/install.md):
- SelfGuideJobs: kopf lists and watches them and patches metadata (finalizer, annotations); the operator
  patches status. Updating finalizers lets children carry blockOwnerDeletion where the
  OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- stage Jobs: watched (label-selected), created, suspended or resumed (patch), deleted (deadline, TTL).
- spec ConfigMaps: server-side applied (create, patch), deleted after the TTL.
- Pods: listed for a finished stage's termination message; read to check that a progress report's token
  belongs to the job's stage pod.
- Events: created (kopf posts a new Event each time; it never patches one).
- AIBrix ModelAdapters (serving.modelAdapters): server-side applied for jobs that set spec.serving.
Never Secrets: stage pods reference the Hugging Face token Secret by name. What it may write is further
limited by the admission policy (admission-policy.yaml).
*/}}
{{- define "selfguide.operatorRules" -}}
- apiGroups: [selfguide.dev]
  resources: [selfguidejobs]
  verbs: [list, watch, patch]
- apiGroups: [selfguide.dev]
  resources: [selfguidejobs/status]
  verbs: [patch]
- apiGroups: [selfguide.dev]
  resources: [selfguidejobs/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- if .Values.serving.modelAdapters }}
- apiGroups: [model.aibrix.ai]
  resources: [modeladapters]
  verbs: [create, patch]
{{- end }}
{{- end }}
