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
