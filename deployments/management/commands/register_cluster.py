"""``manage.py register_cluster --name N --vendor V --region R (--kubeconfig PATH [--context C] | --in-cluster)``.

AWS access for PrivateLink and ECR (optional): ``--aws-profile NAME``, ``--aws-ambient``, or
``--aws-access-key-id ID`` with the secret in the environment variable ``CLUSTER_AWS_SECRET_ACCESS_KEY``
(and ``CLUSTER_AWS_SESSION_TOKEN``), never on the command line where ``ps`` would show it.
"""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import DomainError
from controlplane.queue import RECONCILE_SWEEP, enqueue
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
        parser.add_argument("--force", action="store_true",
                            help="Register even if another registration uses the same API server")
        parser.add_argument("--simulated", action="store_true",
                            help="Its nodes are simulated (no container runs): the gateway answers 503")
        aws = parser.add_mutually_exclusive_group()
        aws.add_argument("--aws-access-key-id", default="",
                         help="With the secret in CLUSTER_AWS_SECRET_ACCESS_KEY (stored encrypted)")
        aws.add_argument("--aws-profile", default="", help="A profile of the worker's AWS config files")
        aws.add_argument("--aws-ambient", action="store_true",
                         help="The worker's own AWS credentials (IRSA, instance role, environment)")

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
                endpoint_url_template=o["endpoint_url_template"], service_url_template=o["service_url_template"],
                aws_access_key_id=o["aws_access_key_id"],
                aws_secret_access_key=os.environ.get("CLUSTER_AWS_SECRET_ACCESS_KEY", "") if o["aws_access_key_id"] else "",
                aws_session_token=os.environ.get("CLUSTER_AWS_SESSION_TOKEN", "") if o["aws_access_key_id"] else "",
                aws_profile=o["aws_profile"], aws_ambient=o["aws_ambient"], simulated=o["simulated"], force=o["force"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        enqueue(RECONCILE_SWEEP)  # pending endpoints there converge now, not at the next beat sweep
        self.stdout.write(cluster.name)
