from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Clusters and deployments"

    def ready(self) -> None:
        from endpoints.signals import endpoint_changed

        from .feed import route_publish

        endpoint_changed.connect(route_publish, dispatch_uid="deployments.route_publish")
