"""Routes: the HF-compatible API at /v2/, the inference catalog at /api/v1/catalog, whoami at the root, docs,
the admin with its operator console, probes."""

from django.contrib import admin
from django.urls import path

from deployments import console_views as console
from deployments import views as dv
from endpoints import catalog_views as cv
from endpoints import cost_views as costs
from endpoints import quota_views as eq
from endpoints import views as ep
from quotas import views as qv

from . import docs, views
from .webhooks import views as wh

NS = "<str:namespace>"
EP = f"v2/endpoint/{NS}/<str:name>"
WH = f"v2/webhooks/{NS}/<int:webhook_id>"
CATALOG = "api/v1/catalog"

urlpatterns = [
    path("api/whoami-v2", views.WhoamiView.as_view(), name="whoami"),
    path("v2/tokens", views.TokenListView.as_view(), name="tokens"),
    path("v2/tokens/<int:token_id>", views.TokenDetailView.as_view(), name="token"),
    path(f"v2/accounts/{NS}/hub-token", views.HubTokenView.as_view(), name="hub-token"),
    path(f"v2/endpoint/{NS}", ep.EndpointCollectionView.as_view(), name="endpoints"),
    path(EP, ep.EndpointDetailView.as_view(), name="endpoint"),
    path(f"{EP}/pause", ep.EndpointPauseView.as_view(), name="endpoint-pause"),
    path(f"{EP}/resume", ep.EndpointResumeView.as_view(), name="endpoint-resume"),
    path(f"{EP}/scale-to-zero", ep.EndpointScaleToZeroView.as_view(), name="endpoint-scale-to-zero"),
    path(f"{EP}/events", ep.EndpointEventsView.as_view(), name="endpoint-events"),
    path(f"{EP}/revisions", ep.EndpointRevisionsView.as_view(), name="endpoint-revisions"),
    path(f"{EP}/rollback", ep.EndpointRollbackView.as_view(), name="endpoint-rollback"),
    path(f"{EP}/rollout/promote", ep.EndpointRolloutPromoteView.as_view(), name="endpoint-rollout-promote"),
    path(f"{EP}/rollout/abort", ep.EndpointRolloutAbortView.as_view(), name="endpoint-rollout-abort"),
    path(f"{EP}/logs", dv.EndpointLogsView.as_view(), name="endpoint-logs"),
    path(f"{EP}/replicas", dv.EndpointReplicasView.as_view(), name="endpoint-replicas"),
    path(f"{EP}/open-metrics", ep.EndpointOpenMetricsView.as_view(), name="endpoint-open-metrics"),
    path(f"v2/provider/{NS}", eq.ProviderView.as_view(), name="provider"),
    path(f"v2/quotas/{NS}", eq.QuotaView.as_view(), name="quotas"),
    path(f"v2/costs/{NS}", costs.CostView.as_view(), name="costs"),
    path(f"v2/budgets/{NS}", costs.BudgetView.as_view(), name="budget"),
    path(f"v2/quotas/{NS}/requests", qv.QuotaRequestsView.as_view(), name="quota-requests"),
    path(f"v2/webhooks/{NS}", wh.WebhookCollectionView.as_view(), name="webhooks"),
    path(WH, wh.WebhookDetailView.as_view(), name="webhook"),
    path(f"{WH}/rotate-secret", wh.WebhookRotateSecretView.as_view(), name="webhook-rotate-secret"),
    path(f"{WH}/deliveries", wh.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    path(f"{WH}/deliveries/<int:delivery_id>/redeliver", wh.WebhookRedeliverView.as_view(), name="webhook-redeliver"),
    path(f"{CATALOG}/list", cv.CatalogListView.as_view(), name="catalog-list"),
    # A repository id has a '/' between author and name, as the client sends it: a path converter.
    path(f"{CATALOG}/model/<path:repo_id>/deploy", cv.CatalogModelDeployView.as_view(), name="catalog-model-deploy"),
    path(f"{CATALOG}/recipe/<str:recipe_id>/deploy", cv.CatalogRecipeDeployView.as_view(), name="catalog-recipe-deploy"),
    path("api/schema/", docs.SchemaView.as_view(), name="schema"),
    path("api/docs/", docs.SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", docs.RedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/console/", admin.site.admin_view(console.overview_view), name="console"),
    path("admin/console/costs/", admin.site.admin_view(console.costs_view), name="console-costs"),
    path("admin/console/endpoint/<int:endpoint_id>/", admin.site.admin_view(console.endpoint_view),
         name="console-endpoint"),
    path("admin/console/endpoint/<int:endpoint_id>/<str:action>", admin.site.admin_view(console.endpoint_action_view),
         name="console-endpoint-action"),
    path("admin/console/quota-request/<int:request_id>/<str:decision>",
         admin.site.admin_view(console.quota_request_view), name="console-quota-request"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
]

handler404 = "controlplane.views.not_found"
handler500 = "controlplane.views.server_error"
