"""``manage.py watch_clusters``: follow every enabled cluster's Pods and Deployments and queue the
reconcile of each endpoint whose objects change (``deployments.watch``). Run exactly one per installation
(more only duplicate work); it stops on SIGTERM or SIGINT."""

import signal

from django.core.management.base import BaseCommand

from deployments.watch import Watcher


class Command(BaseCommand):
    help = "Watch every enabled cluster and queue reconciles as endpoints' objects change."

    def handle(self, *args, **options):
        watcher = Watcher()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: watcher.stop.set())
        watcher.run()
