{{/* Notification channel references for an alert policy (values alerting.notificationChannels). */}}
{{- define "coursebridge-gcp.channelRefs" -}}
{{- $refs := list -}}
{{- range .Values.alerting.notificationChannels -}}
{{- $refs = append $refs (dict "name" (printf "coursebridge-%s" .name)) -}}
{{- end -}}
{{- toJson $refs -}}
{{- end }}
