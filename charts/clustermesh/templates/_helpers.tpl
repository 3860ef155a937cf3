{{- define "clustermesh.labels" -}}
app.kubernetes.io/part-of: clustermesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "clustermesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "clustermesh.clusterArgs" -}}
- --cluster-name={{ required "cluster.name is required: the name of this cluster, unique in the mesh" .Values.cluster.name }}
- --cluster-id={{ required "cluster.id is required: the ID of this cluster (1..255), unique in the mesh" .Values.cluster.id }}
- --max-connected-clusters={{ .Values.cluster.maxConnectedClusters }}
- --kvstore-root={{ .Values.kvstoreRoot }}
{{- end }}

{{- /* Where the agents mount the Secret clustermesh-local-cert: the local
user's certificate and the etcd client config of the cache of remote state
(--clustermesh-cache-config). */ -}}
{{- define "clustermesh.cacheDir" -}}
/var/lib/clustermesh/cache
{{- end }}

{{- /* The agents' etcd client config of the cache: this cluster's etcd
through the clustermesh-apiserver Service (a name its server certificate
covers), logged into as the read-only local user. */ -}}
{{- define "clustermesh.cacheClientConfig" -}}
endpoints:
  - https://clustermesh-apiserver.{{ .Release.Namespace }}.svc:2379
trusted-ca-file: {{ include "clustermesh.cacheDir" . }}/ca.crt
cert-file: {{ include "clustermesh.cacheDir" . }}/tls.crt
key-file: {{ include "clustermesh.cacheDir" . }}/tls.key
{{- end }}
