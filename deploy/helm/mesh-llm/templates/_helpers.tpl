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

{{- define "mesh-llm.caSecretName" -}}
{{- .Values.mesh.existingCASecret | default (printf "%s-ca" (include "mesh-llm.fullname" .)) -}}
{{- end -}}

{{- define "mesh-llm.apiKeysSecretName" -}}
{{- .Values.gateway.apiKeys.existingSecret | default (printf "%s-api-keys" (include "mesh-llm.fullname" .)) -}}
{{- end -}}

{{- define "mesh-llm.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- printf "%s-etcd:2379" (include "mesh-llm.fullname" .) -}}
{{- else -}}
{{- required "etcd.external is required when etcd.enabled is false" (join "," .Values.etcd.external) -}}
{{- end -}}
{{- end -}}

{{/* Environment every service shares: the ConfigMap and this pod's address. */}}
{{- define "mesh-llm.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "mesh-llm.fullname" . }}-config
env:
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


{{/* An init container that issues this pod its certificate from the release's CA (into the
"credentials" volume; only this container sees the CA key). Arguments: root, nodeField
(the fieldPath naming the node: spec.nodeName or metadata.name), role, hosts (extra names). */}}
{{- define "mesh-llm.credentialsInit" -}}
- name: credentials
  image: {{ include "mesh-llm.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    - credentials
    - issue
    - --ca-dir=/ca
    - --mesh-id={{ .root.Values.mesh.id }}
    - --node=$(CERT_NODE)
    - --role={{ .role }}
    - --host=$(POD_IP)
    {{- range .hosts }}
    - --host={{ . }}
    {{- end }}
    - --out=/credentials
  env:
    - name: CERT_NODE
      valueFrom: {fieldRef: {fieldPath: {{ .nodeField }}}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
  resources:
    requests: {cpu: 10m, memory: 32Mi}
  volumeMounts:
    - {name: ca, mountPath: /ca, readOnly: true}
    - {name: credentials, mountPath: /credentials}
{{- end -}}

{{/* The volumes credentialsInit uses. */}}
{{- define "mesh-llm.credentialsVolumes" -}}
- name: ca
  secret:
    secretName: {{ include "mesh-llm.caSecretName" . }}
    items:
      - {key: ca.crt, path: ca.crt}
      - {key: ca.key, path: ca.key}
- name: credentials
  emptyDir: {medium: Memory}
{{- end -}}
