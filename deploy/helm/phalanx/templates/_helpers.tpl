{{- define "phalanx.name" -}}phalanx{{- end -}}
{{- define "phalanx.labels" -}}
app.kubernetes.io/name: phalanx
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "phalanx.scheme" -}}{{ if .Values.tls.enabled }}https{{ else }}http{{ end }}{{- end -}}

{{- /* Settings that cannot work together stop the rendering with the reason. */ -}}
{{- define "phalanx.checkTls" -}}
{{- if and .Values.tls.requireClientCert (not .Values.tls.enabled) -}}
{{- fail "tls.requireClientCert needs tls.enabled: true" -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.requireClientCert -}}
{{- $client := .Values.scheduler.tlsConfig | default dict -}}
{{- if not (and (or $client.certFile $client.certData) (or $client.keyFile $client.keyData)) -}}
{{- fail "tls.requireClientCert needs kube-scheduler's client certificate: set scheduler.tlsConfig.certFile and scheduler.tlsConfig.keyFile (or certData and keyData)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
