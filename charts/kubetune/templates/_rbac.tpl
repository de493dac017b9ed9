{{/*
The operator's API permissions, in one place.  rbac.yaml turns this into a ClusterRole (all
namespaces) or one Role per watched namespace plus a ClusterRole for the cluster-scoped part;
tests/chart compares it with the operator's contract and with the API calls its e2e tests make.

  namespaced: granted in every namespace the operator serves (cluster-wide when it serves all)
  cluster:    cluster-scoped resources
  storage:    the default database Secret in the release namespace, when that namespace is not
              among the served ones (it is covered by `namespaced` otherwise)

Kopf facts behind the conditional rules (kopf 1.45, _core/reactor/observation.py and
_core/engines/peering.py):
  - peering uses ClusterKopfPeering when serving all namespaces, KopfPeering in each served
    namespace otherwise, and nothing at all with --standalone;
  - Kopf lists and watches namespaces only when it serves a list of namespaces (to follow
    them appearing and disappearing); serving all namespaces it never reads them.
*/}}
{{- define "kubetune.rbac.rules" -}}
{{- $peering := include "kubetune.peering.enabled" . -}}
{{- $all := empty .Values.watchNamespaces -}}
namespaced:
  - apiGroups: ["kubetune.io"]
    resources: ["studies"]
    verbs: ["get", "list", "watch", "patch", "update"]
  - apiGroups: ["kubetune.io"]
    resources: ["studies/status"]
    verbs: ["get", "patch", "update"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "create", "delete", "patch"]
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "create", "patch"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create", "patch"]
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
  {{- if and $peering (not $all) }}
  - apiGroups: ["kopf.dev"]
    resources: ["kopfpeerings"]
    verbs: ["get", "list", "watch", "patch"]
  {{- end }}
cluster:
  - apiGroups: ["apiextensions.k8s.io"]
    resources: ["customresourcedefinitions"]
    verbs: ["list", "watch"]
  {{- if and $peering $all }}
  - apiGroups: ["kopf.dev"]
    resources: ["clusterkopfpeerings"]
    verbs: ["get", "list", "watch", "patch"]
  {{- end }}
  {{- if not $all }}
  - apiGroups: [""]
    resources: ["namespaces"]
    verbs: ["list", "watch"]
  {{- end }}
storage:
  {{- if or $all (has .Release.Namespace .Values.watchNamespaces) }} []
  {{- else }}
  - apiGroups: [""]
    resources: ["secrets"]
    resourceNames: [{{ include "kubetune.storage.secretName" . | quote }}]
    verbs: ["get"]
  {{- end }}
{{- end }}
