{{/*
Names, labels and the pieces every process shares. One image runs every process; the processes differ
only by command, probes and resources.
*/}}

{{/* The chart name, overridable. */}}
{{- define "controlplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (or the release name alone when it already contains the chart name), at most 63 characters. */}}
{{- define "controlplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of one component's objects: "<fullname>-<component>", the prefix shortened so that the
suffix always survives the 63-character limit. Call with (dict "root" $ "component" "web").
*/}}
{{- define "controlplane.componentName" -}}
{{- $prefix := include "controlplane.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix .component }}
{{- end }}

{{- define "controlplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select one component's pods; never change them (selectors are immutable). */}}
{{- define "controlplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "controlplane.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The recommended app.kubernetes.io/* labels of every object. Call with (dict "root" $ "component" "web"). */}}
{{- define "controlplane.labels" -}}
helm.sh/chart: {{ include "controlplane.chart" .root }}
{{ include "controlplane.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "controlplane.name" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "controlplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "controlplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "controlplane.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Host names the web process answers to: the configured ones, the ingress host, its Service, and localhost for the probes. */}}
{{- define "controlplane.allowedHosts" -}}
{{- $web := include "controlplane.componentName" (dict "root" . "component" "web") }}
{{- $hosts := concat .Values.config.allowedHosts (list $web (printf "%s.%s.svc" $web .Release.Namespace) "localhost") }}
{{- with .Values.web.ingress.host }}{{ $hosts = append $hosts . }}{{ end }}
{{- $hosts | uniq | join "," }}
{{- end }}

{{/*
The application settings as NAME: "value" lines. The single source of both the ConfigMap (used by
the long-running processes) and the migrate hook's inline env (the ConfigMap does not exist yet when
a pre-install hook runs, and during pre-upgrade it still holds the previous release's values).
*/}}
{{- define "controlplane.configData" -}}
{{- $origins := .Values.config.csrfTrustedOrigins }}
{{- with .Values.web.ingress.host }}{{ $origins = append $origins (printf "https://%s" .) | uniq }}{{ end -}}
DJANGO_DEBUG: "false"
DJANGO_ALLOWED_HOSTS: {{ include "controlplane.allowedHosts" . | quote }}
{{- with $origins }}
DJANGO_CSRF_TRUSTED_ORIGINS: {{ join "," . | quote }}
{{- end }}
DJANGO_BEHIND_TLS_PROXY: {{ .Values.config.behindTlsProxy | toString | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
HF_HUB_URL: {{ .Values.config.hfHubUrl | quote }}
{{- with .Values.config.managedImage }}
MANAGED_IMAGE: {{ . | quote }}
{{- end }}
DEFAULT_QUOTA_CPU: {{ .Values.config.defaultQuota.cpu | toString | quote }}
DEFAULT_QUOTA_GPU: {{ .Values.config.defaultQuota.gpu | toString | quote }}
DEFAULT_QUOTA_NEURON: {{ .Values.config.defaultQuota.neuron | toString | quote }}
RECONCILE_SWEEP_SECONDS: {{ .Values.config.reconcileSweepSeconds | toString | quote }}
DRIFT_SWEEP_SECONDS: {{ .Values.config.driftSweepSeconds | toString | quote }}
GATEWAY_BIND: "0.0.0.0:8080"
{{- with .Values.gateway.holdTimeout }}
GATEWAY_HOLD_TIMEOUT: {{ . | toString | quote }}
{{- end }}
{{- with .Values.gateway.queueLimit }}
GATEWAY_QUEUE_LIMIT: {{ . | toString | quote }}
{{- end }}
{{- with .Values.gateway.pathHosts }}
GATEWAY_PATH_HOSTS: {{ join "," . | quote }}
{{- end }}
{{- /* Behind the chart's Ingress or HTTPRoute the peer is the proxy: trust its X-Forwarded-For. */}}
{{- if ne (toString .Values.gateway.trustedProxies) "" }}
GATEWAY_TRUSTED_PROXIES: {{ .Values.gateway.trustedProxies | toString | quote }}
{{- else if or .Values.gateway.ingress.enabled .Values.gateway.httpRoute.enabled }}
GATEWAY_TRUSTED_PROXIES: "1"
{{- end }}
{{- /* The reconciler's per-endpoint NetworkPolicy admits exactly these pods: this release's gateway. */}}
GATEWAY_NAMESPACE: {{ .Release.Namespace | quote }}
{{- /* Labelled on every endpoint object: this release prunes only its own, even on a shared cluster. */}}
INSTALLATION_ID: {{ printf "%s.%s" .Release.Namespace .Release.Name | trunc 63 | trimSuffix "." | quote }}
GATEWAY_POD_LABELS: {{ printf "app.kubernetes.io/component=gateway,app.kubernetes.io/instance=%s" .Release.Name | quote }}
{{- range $name, $value := .Values.config.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Checks that the data stores and keys are configured; fails the render with the value to set. (helm
lint tolerates a failed `fail` and `required`, so lint with default values still passes.)
*/}}
{{- define "controlplane.validate" -}}
{{- $v := .Values }}
{{- if $v.existingSecret }}
{{- if or $v.database.url $v.redis.url $v.redis.brokerUrl $v.secrets.djangoSecretKey $v.secrets.secretsEncryptionKey $v.secrets.hfHubToken $v.secrets.gatewayMetricsToken $v.secrets.gatewayRecordKey }}
{{- fail "existingSecret is set, so the chart creates no Secret: put DATABASE_URL, REDIS_URL and the keys in that Secret (or use database.existingSecret / redis.existingSecret) and leave database.url, redis.url, redis.brokerUrl and secrets.* empty" }}
{{- end }}
{{- else }}
{{- if not (or $v.database.url $v.database.existingSecret) }}
{{- fail "the database is not configured: set database.url (postgres://user:password@host:5432/name), database.existingSecret, or existingSecret" }}
{{- end }}
{{- if not (or $v.redis.url $v.redis.existingSecret) }}
{{- fail "Redis is not configured: set redis.url (redis://host:6379/0), redis.existingSecret, or existingSecret" }}
{{- end }}
{{- if not (and $v.secrets.djangoSecretKey $v.secrets.secretsEncryptionKey) }}
{{- fail "set secrets.djangoSecretKey and secrets.secretsEncryptionKey (random strings, e.g. `openssl rand -base64 48`), or existingSecret; keep the encryption key for the life of the database" }}
{{- end }}
{{- end }}
{{- if and $v.existingSecretHasGatewayRecordKey (not $v.existingSecret) }}
{{- fail "existingSecretHasGatewayRecordKey is only for existingSecret: without it, set secrets.gatewayRecordKey" }}
{{- end }}
{{- if and (or $v.gateway.ingress.enabled $v.gateway.httpRoute.enabled) (not $v.gateway.domain) }}
{{- fail "gateway.domain is required when gateway.ingress or gateway.httpRoute is enabled (endpoints are served under *.<gateway.domain>)" }}
{{- end }}
{{- if and $v.gateway.httpRoute.enabled (not $v.gateway.httpRoute.parentRefs) }}
{{- fail "gateway.httpRoute.parentRefs must name the Gateway the route attaches to" }}
{{- end }}
{{- if and $v.web.ingress.enabled (not $v.web.ingress.host) }}
{{- fail "web.ingress.host is required when web.ingress.enabled is true" }}
{{- end }}
{{- end }}

{{/* The data of the chart's Secret (and of its copy for the migrate hook). */}}
{{- define "controlplane.secretData" -}}
{{- with .Values.database.url }}
DATABASE_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.redis.url }}
REDIS_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.redis.brokerUrl }}
CELERY_BROKER_URL: {{ . | b64enc | quote }}
{{- end }}
DJANGO_SECRET_KEY: {{ .Values.secrets.djangoSecretKey | b64enc | quote }}
SECRETS_ENCRYPTION_KEY: {{ .Values.secrets.secretsEncryptionKey | b64enc | quote }}
{{- with .Values.secrets.hfHubToken }}
HF_HUB_TOKEN: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.gatewayMetricsToken }}
GATEWAY_METRICS_TOKEN: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.gatewayRecordKey }}
GATEWAY_RECORD_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
The secret environment of one process, each variable a secretKeyRef, and CONTROLPLANE_PROCESS naming the
process (controlplane/settings.py then requires only that process's keys). Each process gets only the
secrets it reads, so a compromised pod leaks only those:

  web      DATABASE_URL REDIS_URL CELERY_BROKER_URL DJANGO_SECRET_KEY SECRETS_ENCRYPTION_KEY GATEWAY_RECORD_KEY
  worker   the same plus HF_HUB_TOKEN (it resolves model revisions on the Hub)
  watcher  DATABASE_URL REDIS_URL CELERY_BROKER_URL SECRETS_ENCRYPTION_KEY (it reads the clusters' stored
           credentials and queues reconciles; it signs nothing)
  beat     REDIS_URL CELERY_BROKER_URL (it only enqueues the sweeps; its schedule is a file in /tmp)
  migrate  DATABASE_URL
  gateway  DATABASE_URL (cold misses) REDIS_URL CELERY_BROKER_URL (wake-ups) GATEWAY_METRICS_TOKEN and its
           record key: GATEWAY_RECORD_KEY when one is configured (secrets.gatewayRecordKey, or
           existingSecretHasGatewayRecordKey), else DJANGO_SECRET_KEY, which the record key is derived from
           (Helm cannot compute that HMAC). Never SECRETS_ENCRYPTION_KEY or HF_HUB_TOKEN.

Call with (dict "root" $ "component" "web" "secretName" NAME): NAME is the Secret holding the application
keys (the chart's, the migrate hook's copy, or existingSecret).
*/}}
{{- define "controlplane.secretEnv" -}}
{{- $v := .root.Values }}
{{- $c := .component }}
{{- $ownRecordKey := or $v.secrets.gatewayRecordKey (and $v.existingSecret $v.existingSecretHasGatewayRecordKey) }}
- name: CONTROLPLANE_PROCESS
  value: {{ $c | quote }}
{{- if has $c (list "web" "worker" "watcher" "gateway" "migrate") }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if $v.database.existingSecret }}
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.existingSecretKey }}
      {{- else }}
      name: {{ .secretName }}
      key: DATABASE_URL
      {{- end }}
{{- end }}
{{- if has $c (list "web" "worker" "watcher" "beat" "gateway") }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if $v.redis.existingSecret }}
      name: {{ $v.redis.existingSecret }}
      key: {{ $v.redis.existingSecretKey }}
      {{- else }}
      name: {{ .secretName }}
      key: REDIS_URL
      {{- end }}
- name: CELERY_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: CELERY_BROKER_URL
      optional: true
{{- end }}
{{- if or (has $c (list "web" "worker")) (and (eq $c "gateway") (not $ownRecordKey)) }}
- name: DJANGO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: DJANGO_SECRET_KEY
{{- end }}
{{- if has $c (list "web" "worker" "watcher") }}
- name: SECRETS_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: SECRETS_ENCRYPTION_KEY
{{- end }}
{{- if eq $c "worker" }}
- name: HF_HUB_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: HF_HUB_TOKEN
      optional: true
{{- end }}
{{- if eq $c "gateway" }}
- name: GATEWAY_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: GATEWAY_METRICS_TOKEN
      optional: true
{{- end }}
{{- if has $c (list "web" "worker" "gateway") }}
- name: GATEWAY_RECORD_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: GATEWAY_RECORD_KEY
      {{- if not (and (eq $c "gateway") $ownRecordKey) }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the application keys for the long-running processes. */}}
{{- define "controlplane.secretName" -}}
{{- default (include "controlplane.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Pod-level settings shared by every pod. Call with (dict "root" $ "component" "web"). */}}
{{- define "controlplane.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "controlplane.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod annotations: the shared ones plus checksums so that a config or secret change rolls the pods. */}}
{{- define "controlplane.podAnnotations" -}}
checksum/config: {{ include "controlplane.configData" . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include "controlplane.secretData" . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The parts of a pod spec every process shares: scheduling, identity, security, /tmp. Call with
(dict "root" $ "component" "web" "automountToken" false "affinity" .Values.web.affinity).
*/}}
{{- define "controlplane.podCommon" -}}
{{- $v := .root.Values }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "controlplane.serviceAccountName" .root }}
automountServiceAccountToken: {{ .automountToken | default false }}
securityContext:
  {{- include "controlplane.podSecurityContext" . | nindent 2 }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $v.affinity .affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpSizeLimit }}
{{- end }}

{{/* The parts of a container every process shares: image, env, security, /tmp. */}}
{{- define "controlplane.containerCommon" -}}
image: {{ include "controlplane.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "controlplane.fullname" .root }}
env:
  {{- include "controlplane.secretEnv" (dict "root" .root "component" .component "secretName" (include "controlplane.secretName" .root)) | trim | nindent 2 }}
securityContext:
  {{- include "controlplane.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/* Cluster-scoped names carry the namespace: two releases of the same name in two namespaces must not share them. */}}
{{- define "controlplane.clusterRoleName" -}}
{{- printf "%s-%s" .Release.Namespace (include "controlplane.fullname" .) }}
{{- end }}
