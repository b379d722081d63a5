{{/*
Shared building blocks. Every service template calls them with a dict:
  root       the chart's top-level context ($)
  svc        ingest | enrollment | subscription | analytics | console
  component  api | worker | relay | sweep
Resource names do not depend on the release name: the Workload Identity bindings in k8s/iam.yaml name
the Kubernetes service accounts (coursebridge/coursebridge-<svc>), and on-call docs name the Deployments.
*/}}

{{- define "coursebridge.name" -}}
{{- printf "coursebridge-%s" . -}}
{{- end }}

{{- define "coursebridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coursebridge.name" .svc }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "coursebridge.labels" -}}
{{ include "coursebridge.selectorLabels" . }}
app.kubernetes.io/part-of: coursebridge
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
coursebridge.io/service: {{ .svc }}
{{- end }}

{{/* The image of a service: [registry/]repository:tag (tag may carry @sha256:... from Skaffold). */}}
{{- define "coursebridge.image" -}}
{{- $images := .root.Values.images -}}
{{- $image := index $images .svc -}}
{{- $repository := $image.repository -}}
{{- with $images.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end -}}
{{- $tag := $image.tag | default $images.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end }}

{{/* Google service account of a service (k8s/iam.yaml creates it). */}}
{{- define "coursebridge.gsa" -}}
{{- printf "coursebridge-%s@%s.iam.gserviceaccount.com" .svc .root.Values.gcp.projectId -}}
{{- end }}

{{/* Environment every process gets. */}}
{{- define "coursebridge.commonEnv" -}}
- name: COURSEBRIDGE_BACKEND
  value: {{ .root.Values.backend | quote }}
- name: GOOGLE_CLOUD_PROJECT
  value: {{ .root.Values.gcp.projectId | quote }}
{{- if has .svc (list "ingest" "enrollment" "subscription") }}
# Each service's own Firestore database (coursebridge-gcp: files/firestore.yaml); analytics has none.
- name: FIRESTORE_DATABASE
  value: {{ .svc | quote }}
{{- end }}
- name: LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
{{- if .root.Values.emulators.enabled }}
- name: PUBSUB_EMULATOR_HOST
  value: {{ .root.Values.emulators.pubsubHost | quote }}
- name: FIRESTORE_EMULATOR_HOST
  value: {{ .root.Values.emulators.firestoreHost | quote }}
- name: BIGQUERY_EMULATOR_HOST
  value: {{ .root.Values.emulators.bigqueryHost | quote }}
{{- end }}
{{- end }}

{{/*
The secrets each process reads, and nothing more: "<svc>-<component>" -> [[env name, values.secrets key]].
*/}}
{{- define "coursebridge.secretsOf" -}}
{{- $map := dict
  "ingest-api" (list (list "HOTMART_HOTTOK" "hotmartHottok") (list "ADMIN_TOKEN" "adminToken") (list "LOOKUP_HASH_KEY" "lookupHashKey"))
  "enrollment-api" (list (list "ADMIN_TOKEN" "adminToken") (list "TALENTLMS_API_KEY" "talentlmsApiKey"))
  "enrollment-worker" (list (list "TALENTLMS_API_KEY" "talentlmsApiKey"))
  "subscription-api" (list (list "ADMIN_TOKEN" "adminToken") (list "LOOKUP_HASH_KEY" "lookupHashKey"))
  "subscription-worker" (list (list "LOOKUP_HASH_KEY" "lookupHashKey"))
  "subscription-sweep" (list (list "LOOKUP_HASH_KEY" "lookupHashKey"))
  "analytics-api" (list (list "ANALYTICS_PSEUDONYM_KEY" "analyticsPseudonymKey") (list "ADMIN_TOKEN" "adminToken"))
  "analytics-worker" (list (list "ANALYTICS_PSEUDONYM_KEY" "analyticsPseudonymKey"))
  "console-api" (list (list "ADMIN_TOKEN" "adminToken") (list "CONSOLE_SECRET_KEY" "consoleSecretKey"))
-}}
{{- toJson (index $map (printf "%s-%s" .svc .component) | default list) -}}
{{- end }}

{{- define "coursebridge.secretDir" -}}/var/run/secrets/coursebridge{{- end }}

{{/*
Secret environment of a process: with secretManager.enabled, <NAME>_FILE pointing at the Secret Manager
version mounted by the Secrets Store CSI driver (GKE add-on); otherwise <NAME> from a Kubernetes Secret.
*/}}
{{- define "coursebridge.secretEnv" -}}
{{- $root := .root -}}
{{- range include "coursebridge.secretsOf" . | fromJsonArray }}
{{- $ref := index $root.Values.secrets (index . 1) }}
{{- if $root.Values.secretManager.enabled }}
- name: {{ index . 0 }}_FILE
  value: {{ printf "%s/%s" (include "coursebridge.secretDir" $root) $ref.key | quote }}
{{- else }}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name | quote }}
      key: {{ $ref.key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret Manager volume of a process that reads secrets (none otherwise). */}}
{{- define "coursebridge.secretVolume" -}}
{{- if and .root.Values.secretManager.enabled (include "coursebridge.secretsOf" . | fromJsonArray) }}
- name: secrets
  csi:
    driver: secrets-store-gke.csi.k8s.io
    readOnly: true
    volumeAttributes:
      secretProviderClass: {{ printf "coursebridge-%s-%s" .svc .component }}
{{- end }}
{{- end }}

{{- define "coursebridge.secretMount" -}}
{{- if and .root.Values.secretManager.enabled (include "coursebridge.secretsOf" . | fromJsonArray) }}
- name: secrets
  mountPath: {{ include "coursebridge.secretDir" .root }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "coursebridge.podSpecCommon" -}}
serviceAccountName: {{ include "coursebridge.name" .svc }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* HTTP probes on the container port named http: /healthz (alive) and /readyz (backends answer). */}}
{{- define "coursebridge.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
# /readyz waits up to 5 s on Firestore: the probe must outwait it, or a slow Firestore turns every pod
# unready and the load balancer answers 502 instead of the app's own 503.
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 10
  timeoutSeconds: 8
  failureThreshold: 3
{{- end }}

{{/*
Local clusters: wait until the emulators answer before starting, so a process starting before its
backends stays in Init (unready) instead of crash-looping.
*/}}
{{- define "coursebridge.waitForEmulators" -}}
{{- if .root.Values.emulators.enabled }}
initContainers:
  - name: wait-for-emulators
    image: {{ include "coursebridge.image" . | quote }}
    imagePullPolicy: {{ .root.Values.images.pullPolicy }}
    command:
      - python
      - -c
      - |
        import socket, sys, time
        for target in sys.argv[1:]:
            host, port = target.rsplit(":", 1)
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                    break
                except OSError:
                    print("waiting for", target, flush=True)
                    time.sleep(2)
      - {{ .root.Values.emulators.pubsubHost | quote }}
      - {{ .root.Values.emulators.firestoreHost | quote }}
      - {{ .root.Values.emulators.bigqueryHost | quote }}
    resources:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {memory: 64Mi}
    securityContext:
      {{- toYaml .root.Values.containerSecurityContext | nindent 6 }}
{{- end }}
{{- end }}

{{- define "coursebridge.topologySpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "coursebridge.selectorLabels" . | nindent 8 }}
{{- end }}

{{/*
The HTTP process of a service: gunicorn with the shared configuration, /healthz /readyz /metrics on
PORT (dict root, svc, port: 8080 unless given; the console's is 8084). Prometheus' multi-process mode
needs a writable directory shared by the gunicorn workers.
*/}}
{{- define "coursebridge.apiDeployment" -}}
{{- $port := .port | default 8080 -}}
{{- $values := index .root.Values .svc -}}
{{- $api := $values.api -}}
{{- $ctx := dict "root" .root "svc" .svc "component" "api" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "coursebridge.name" .svc }}-api
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
spec:
  {{- if not (and $api.autoscaling $api.autoscaling.enabled) }}
  replicas: {{ $api.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "coursebridge.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "coursebridge.labels" $ctx | nindent 8 }}
    spec:
      {{- include "coursebridge.podSpecCommon" $ctx | nindent 6 }}
      # preStop sleep (20 s: the load balancer stops sending to an endpoint only after its NEG is
      # updated) + gunicorn's graceful drain (25 s) + margin.
      terminationGracePeriodSeconds: 60
      {{- include "coursebridge.topologySpread" $ctx | nindent 6 }}
      {{- include "coursebridge.waitForEmulators" $ctx | nindent 6 }}
      containers:
        - name: api
          image: {{ include "coursebridge.image" $ctx | quote }}
          imagePullPolicy: {{ .root.Values.images.pullPolicy }}
          command:
            - gunicorn
            - -c
            - python:coursebridge.runtime.gunicorn_conf
            - {{ printf "%s.entrypoints.api:create_app()" .svc | quote }}
          ports:
            - name: http
              containerPort: {{ $port }}
              protocol: TCP
          env:
            - name: PORT
              value: {{ $port | quote }}
            - name: HOST
              value: "0.0.0.0"
            - name: WEB_CONCURRENCY
              value: {{ $api.webConcurrency | quote }}
            - name: GUNICORN_THREADS
              value: {{ $api.threads | quote }}
            - name: GRACEFUL_TIMEOUT
              value: "25"
            # Only the load balancer and in-cluster clients reach the pods (NetworkPolicy).
            - name: FORWARDED_ALLOW_IPS
              value: "*"
            - name: PROMETHEUS_MULTIPROC_DIR
              value: /var/run/prometheus
            {{- include "coursebridge.commonEnv" $ctx | nindent 12 }}
            {{- include "coursebridge.secretEnv" $ctx | nindent 12 }}
            {{- include (printf "coursebridge.%s.env" .svc) $ctx | nindent 12 }}
          {{- include "coursebridge.probes" $ctx | nindent 10 }}
          lifecycle:
            # Keep serving while the endpoint is removed from the load balancer, then drain.
            preStop:
              sleep:
                seconds: 20
          resources:
            {{- toYaml $api.resources | nindent 12 }}
          securityContext:
            {{- toYaml .root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: prometheus
              mountPath: /var/run/prometheus
            {{- include "coursebridge.secretMount" $ctx | nindent 12 }}
      volumes:
        {{- include "coursebridge.secretVolume" $ctx | nindent 8 }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        - name: prometheus
          emptyDir:
            medium: Memory
            sizeLimit: 32Mi
{{- end }}

{{/*
A worker process (subscribers and loops): dict root, svc, component, module, values, strategy.
/healthz /readyz /metrics on WORKER_HEALTH_PORT. SIGTERM stops pulling and lets in-flight handlers finish.
*/}}
{{- define "coursebridge.workerDeployment" -}}
{{- $worker := .values -}}
{{- $ctx := dict "root" .root "svc" .svc "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "coursebridge.name" .svc }}-{{ .component }}
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
spec:
  {{- if not (and $worker.autoscaling $worker.autoscaling.enabled) }}
  replicas: {{ $worker.replicas | default 1 }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml .strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "coursebridge.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "coursebridge.labels" $ctx | nindent 8 }}
    spec:
      {{- include "coursebridge.podSpecCommon" $ctx | nindent 6 }}
      # Each subscriber drains for up to 30 s after SIGTERM; unfinished messages are redelivered anyway.
      terminationGracePeriodSeconds: 90
      {{- include "coursebridge.waitForEmulators" $ctx | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "coursebridge.image" $ctx | quote }}
          imagePullPolicy: {{ .root.Values.images.pullPolicy }}
          command: [python, -m, {{ .module | quote }}]
          ports:
            - name: http
              containerPort: 9090
              protocol: TCP
          env:
            - name: WORKER_HEALTH_PORT
              value: "9090"
            - name: WORKER_HEALTH_HOST
              value: "0.0.0.0"
            {{- include "coursebridge.commonEnv" $ctx | nindent 12 }}
            {{- include "coursebridge.secretEnv" $ctx | nindent 12 }}
            {{- include (printf "coursebridge.%s.env" .svc) $ctx | nindent 12 }}
          {{- include "coursebridge.probes" $ctx | nindent 10 }}
          resources:
            {{- toYaml $worker.resources | nindent 12 }}
          securityContext:
            {{- toYaml .root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "coursebridge.secretMount" $ctx | nindent 12 }}
      volumes:
        {{- include "coursebridge.secretVolume" $ctx | nindent 8 }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end }}

{{/* ClusterIP Service in front of a service's API: dict root, svc, annotations, port (optional). */}}
{{- define "coursebridge.apiService" -}}
{{- $port := .port | default 8080 -}}
{{- $ctx := dict "root" .root "svc" .svc "component" "api" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "coursebridge.name" .svc }}
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  selector:
    {{- include "coursebridge.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ $port }}
      targetPort: http
      protocol: TCP
{{- end }}

{{- define "coursebridge.serviceAccount" -}}
{{- $ctx := dict "root" .root "svc" .svc -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "coursebridge.name" .svc }}
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
  {{- if .root.Values.gcp.workloadIdentity }}
  annotations:
    # Workload Identity: this Kubernetes service account acts as the service's Google service account.
    iam.gke.io/gcp-service-account: {{ include "coursebridge.gsa" $ctx }}
  {{- end }}
{{- end }}

{{/* dict root, svc, component, pdb (values.<svc>.<component>.pdb). */}}
{{- define "coursebridge.pdb" -}}
{{- $ctx := dict "root" .root "svc" .svc "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "coursebridge.name" .svc }}-{{ .component }}
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "coursebridge.selectorLabels" $ctx | nindent 6 }}
{{- end }}

{{/* Worker autoscaling on the Pub/Sub backlog of each of its subscriptions (the largest demand wins). */}}
{{- define "coursebridge.workerHpa" -}}
{{- $worker := .values -}}
{{- $ctx := dict "root" .root "svc" .svc "component" "worker" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "coursebridge.name" .svc }}-worker
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "coursebridge.name" .svc }}-worker
  minReplicas: {{ $worker.autoscaling.minReplicas }}
  maxReplicas: {{ $worker.autoscaling.maxReplicas }}
  metrics:
    {{- range $worker.subscriptions }}
    - type: External
      external:
        metric:
          name: pubsub.googleapis.com|subscription|num_undelivered_messages
          selector:
            matchLabels:
              resource.labels.subscription_id: {{ . | quote }}
        target:
          type: AverageValue
          averageValue: {{ $worker.autoscaling.undeliveredMessagesPerReplica | quote }}
    {{- end }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
{{- end }}

{{/*
Inbound: Managed Prometheus (and the listed client namespaces, the console's pods for the four services'
APIs, and for a public service the Google Front Ends) on the http port only. Outbound: DNS, the GKE
metadata server (Workload Identity) and HTTPS; the console also the four services' APIs.
dict root, svc, public (bool).
*/}}
{{- define "coursebridge.networkPolicy" -}}
{{- $np := .root.Values.networkPolicy -}}
{{- $ctx := dict "root" .root "svc" .svc -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "coursebridge.name" .svc }}
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "coursebridge.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- if $np.metricsNamespaces }}
    - from:
        {{- range $np.metricsNamespaces }}
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . | quote }}
        {{- end }}
      ports:
        - port: http
    {{- end }}
    {{- if $np.apiClientNamespaces }}
    - from:
        {{- range $np.apiClientNamespaces }}
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . | quote }}
        {{- end }}
      ports:
        - port: http
    {{- end }}
    {{- if and .root.Values.console.enabled (ne .svc "console") }}
    # The operator console calls the admin APIs server side (its pods only; API pods listen on http).
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: coursebridge-console
      ports:
        - port: http
    {{- end }}
    {{- if .public }}
    - from:
        {{- range $np.loadBalancerSourceRanges }}
        - ipBlock:
            cidr: {{ . | quote }}
        {{- end }}
      ports:
        - port: http
    {{- end }}
  egress:
    - ports:
        - {port: 53, protocol: UDP}
        - {port: 53, protocol: TCP}
    - to:
        - ipBlock: {cidr: 169.254.169.254/32}
        - ipBlock: {cidr: 169.254.169.252/32}
      ports:
        - {port: 80, protocol: TCP}
        - {port: 988, protocol: TCP}
    - ports:
        - {port: 443, protocol: TCP}
    {{- if eq .svc "console" }}
    # The four services' admin APIs (their API pods' http port).
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/component: api
              app.kubernetes.io/part-of: coursebridge
      ports:
        - {port: 8080, protocol: TCP}
    {{- end }}
{{- end }}

{{- define "coursebridge.podMonitoring" -}}
{{- $ctx := dict "root" .root "svc" .svc -}}
apiVersion: monitoring.googleapis.com/v1
kind: PodMonitoring
metadata:
  name: {{ include "coursebridge.name" .svc }}
  labels:
    {{- include "coursebridge.labels" $ctx | nindent 4 }}
spec:
  # API and worker pods both name their metrics port "http"; the sweep's pods have none.
  selector:
    matchLabels:
      {{- include "coursebridge.selectorLabels" $ctx | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .root.Values.podMonitoring.interval }}
{{- end }}
