{{- define "mesh-llm.fullname" -}}
{{- printf "%s-%s" .Release.Name "mesh-llm" | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "mesh-llm.labels" -}}
app.kubernetes.io/name: mesh-llm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mesh-llm.selector" -}}
app.kubernetes.io/name: mesh-llm
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mesh-llm.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{- define "mesh-llm.secretName" -}}
{{- .Values.mesh.existingSecret | default (printf "%s-secret" (include "mesh-llm.fullname" .)) -}}
{{- end -}}

{{- define "mesh-llm.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- printf "%s-etcd:2379" (include "mesh-llm.fullname" .) -}}
{{- else -}}
{{- required "etcd.external is required when etcd.enabled is false" (join "," .Values.etcd.external) -}}
{{- end -}}
{{- end -}}

{{/* Environment every service shares: the ConfigMap, the secret, and this pod's address. */}}
{{- define "mesh-llm.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "mesh-llm.fullname" . }}-config
env:
  - name: MESH_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "mesh-llm.secretName" . }}
        key: secret
  - name: MESH_ADVERTISE_HOST
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
{{- end -}}

{{/* HTTP probes on a service's /healthz and /readyz. */}}
{{- define "mesh-llm.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ . }}}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{- define "mesh-llm.terminationGrace" -}}
{{ add .Values.shutdownGraceSeconds .Values.worker.stopGraceSeconds 15 }}
{{- end -}}
