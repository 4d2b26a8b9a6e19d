from django.apps import AppConfig
from django.db.models.signals import post_save


class QuotasConfig(AppConfig):
    name = "quotas"
    verbose_name = "Quotas and hardware"

    def ready(self) -> None:
        from controlplane.models import Account

        from .services import quota_defaults_on_create

        # However an account is created (the services, the admin, the ORM), it gets its default quotas in
        # the same transaction.
        post_save.connect(quota_defaults_on_create, sender=Account, dispatch_uid="quotas.defaults")
