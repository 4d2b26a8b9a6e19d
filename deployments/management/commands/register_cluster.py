"""``manage.py register_cluster --name N --vendor V --region R (--kubeconfig PATH [--context C] | --in-cluster)``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import DomainError
from deployments.services import cluster_register


class Command(BaseCommand):
    help = "Register the Kubernetes cluster that serves one (vendor, region). Prints the cluster name."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--vendor", required=True)
        parser.add_argument("--region", required=True)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--kubeconfig", type=Path)
        source.add_argument("--in-cluster", action="store_true")
        parser.add_argument("--context", default="")
        parser.add_argument("--namespace-prefix", default="ie-")
        parser.add_argument("--ingress-domain", default="")
        parser.add_argument("--endpoint-url-template", default=None)
        parser.add_argument("--service-url-template", default=None)

    def handle(self, *args, **o):
        text = None
        if o["kubeconfig"]:
            try:
                text = o["kubeconfig"].read_text()
            except OSError as exc:
                raise CommandError(f"Cannot read {o['kubeconfig']}: {exc.strerror}") from exc
        try:
            cluster = cluster_register(
                name=o["name"], vendor=o["vendor"], region=o["region"], kubeconfig_text=text, context=o["context"],
                in_cluster=o["in_cluster"], namespace_prefix=o["namespace_prefix"], ingress_domain=o["ingress_domain"],
                endpoint_url_template=o["endpoint_url_template"], service_url_template=o["service_url_template"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        from workers.tasks import reconcile_sweep_task

        try:
            reconcile_sweep_task.apply_async(retry=False)  # pending endpoints there converge now, not in 15 s
        except Exception:  # the beat sweep will get them
            pass
        self.stdout.write(cluster.name)
