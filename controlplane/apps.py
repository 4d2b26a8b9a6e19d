from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Accounts and access"

    def ready(self) -> None:
        from . import signals  # noqa: F401 (connects the receivers)
