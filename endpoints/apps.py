from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "endpoints"
    verbose_name = "Endpoints"

    def ready(self) -> None:
        from controlplane.metrics import REGISTRY

        from .metrics import EndpointCollector

        REGISTRY.register(EndpointCollector())
