"""The control plane's worker identity on a local cluster: the ServiceAccount, roles, bindings and admission
policy the Helm chart renders (so the worker gets exactly the rules a production install grants it, never
the admin's certificate), applied idempotently, and a kubeconfig holding a bound token for that ServiceAccount.
"""
from __future__ import annotations

import subprocess
import urllib.error
from pathlib import Path

import yaml

from .cluster import LocalCluster, kubeconfig_text

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "controlplane"
CHART_NAMESPACE = "cp-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
              "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def chart_worker_rbac() -> list[dict]:
    """The ServiceAccount, ClusterRole(s), binding(s) and admission policy the chart renders for the worker,
    as rendered."""
    helm = REPO / ".tools" / "bin" / "helm"
    result = subprocess.run([str(helm), "template", "cp", str(CHART), "--namespace", CHART_NAMESPACE,
                             "--values", str(CHART / "ci" / "minimal-values.yaml")],
                            capture_output=True, text=True, check=True)
    return [o for o in yaml.safe_load_all(result.stdout) if o and o.get("kind") in RBAC_KINDS]


def _collection(kind: str) -> str:
    group = {"ServiceAccount": "/api/v1", "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1",
             "ValidatingAdmissionPolicyBinding": "/apis/admissionregistration.k8s.io/v1"}.get(
        kind, "/apis/rbac.authorization.k8s.io/v1")
    plural = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
              "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
              "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}[kind]
    namespaced = kind in ("ServiceAccount", "Role", "RoleBinding")
    return f"{group}/namespaces/{CHART_NAMESPACE}/{plural}" if namespaced else f"{group}/{plural}"


def _apply(cluster: LocalCluster, collection: str, obj: dict) -> None:
    """Create ``obj``, or replace it when it exists (so a changed chart takes effect on the next start)."""
    try:
        cluster.request("POST", collection, obj)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
        path = f"{collection}/{obj['metadata']['name']}"
        live = cluster.request("GET", path)
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
        cluster.request("PUT", path, body)


def worker_kubeconfig(cluster: LocalCluster, *, token_seconds: int = 6 * 3600) -> tuple[str, str]:
    """(kubeconfig text, username) for the chart's worker ServiceAccount on ``cluster``, bound to the
    chart's own rules; the token expires after ``token_seconds``."""
    _apply(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": CHART_NAMESPACE}})
    accounts = []
    for obj in chart_worker_rbac():
        _apply(cluster, _collection(obj["kind"]), obj)
        if obj["kind"] == "ServiceAccount":
            accounts.append(obj["metadata"]["name"])
    if len(accounts) != 1:
        raise RuntimeError(f"the chart should render one ServiceAccount, got {accounts}")
    token = cluster.request(
        "POST", f"/api/v1/namespaces/{CHART_NAMESPACE}/serviceaccounts/{accounts[0]}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": token_seconds}})["status"]["token"]
    text = kubeconfig_text(server=cluster.server, ca=cluster.pki / "ca.crt", token=token)
    return text, f"system:serviceaccount:{CHART_NAMESPACE}:{accounts[0]}"
