{{/*
The operator's API permissions, in one place.  rbac.yaml turns this into a ClusterRole (all
namespaces) or one Role per watched namespace plus a ClusterRole for the cluster-scoped part;
tests/chart compares it with the operator's contract and with the API calls its e2e tests make.

  namespaced: granted in every namespace the operator serves (cluster-wide when it serves all)
  cluster:    cluster-scoped resources

Kopf facts behind the conditional rules (kopf 1.45, _core/reactor/observation.py and
_core/engines/peering.py):
  - peering uses ClusterKopfPeering when serving all namespaces, KopfPeering in each served
    namespace otherwise, and nothing at all with --standalone;
  - serving a list of namespaces, kubetune-operator turns Kopf's namespace scanning off
    (settings.scanning.disabled), so it never reads namespaces;
  - the verbs are the calls recorded from the operator in the e2e tests
    (tests/chart/operator_api_calls.json); the operator reads its default database URL
    from its environment, so it needs no access to that Secret.
*/}}
{{- define "kubetune.rbac.rules" -}}
{{- $peering := include "kubetune.peering.enabled" . -}}
{{- $all := empty .Values.watchNamespaces -}}
namespaced:
  - apiGroups: ["kubetune.io"]
    resources: ["studies"]
    verbs: ["list", "watch", "patch"]
  - apiGroups: ["kubetune.io"]
    resources: ["studies/status"]
    verbs: ["patch"]
  # Not a call: the API server's OwnerReferencesPermissionEnforcement (OpenShift,
  # hardened clusters) lets only those who may update a Study's finalizers create
  # pods, Secrets and ConfigMaps with blockOwnerDeletion pointing at it.
  - apiGroups: ["kubetune.io"]
    resources: ["studies/finalizers"]
    verbs: ["update"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["list", "create", "delete", "patch"]
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["create", "patch", "delete"]
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "create", "delete"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create"]
  - apiGroups: [""]
    resources: ["serviceaccounts"]
    verbs: ["create"]
  {{- if and $peering (not $all) }}
  - apiGroups: ["kopf.dev"]
    resources: ["kopfpeerings"]
    verbs: ["list", "watch", "patch"]
  {{- end }}
cluster:
  - apiGroups: ["apiextensions.k8s.io"]
    resources: ["customresourcedefinitions"]
    verbs: ["list", "watch"]
  {{- if and $peering $all }}
  - apiGroups: ["kopf.dev"]
    resources: ["clusterkopfpeerings"]
    verbs: ["list", "watch", "patch"]
  {{- end }}
{{- end }}
