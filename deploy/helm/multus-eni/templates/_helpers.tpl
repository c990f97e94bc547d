{{- define "multus-eni.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "multus-eni.labels" -}}
app.kubernetes.io/name: multus-eni
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "multus-eni.clusterName" -}}
{{- required "clusterName is required: it scopes the ENIs this release owns" .Values.clusterName -}}
{{- end -}}
