"""``deployments.apply.up_to_date``: what counts as "the live object is what we rendered" against the forms
the real API server returns (found by the cluster tier): canonical quantities, omitted empty fields,
defaulted fields, LIST items without kind/apiVersion, and the HPA's replica count."""
import copy

from deployments.apply import stale_field, stamped, up_to_date


def deployment(**container) -> dict:
    return stamped({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ep-web", "namespace": "ie-a"},
        "spec": {"replicas": 1, "template": {"spec": {
            "containers": [{"name": "main", "image": "img:1",
                            "resources": {"limits": {"memory": "4096Mi"}, "requests": {"cpu": "900m"}},
                            **container}],
            "volumes": [{"name": "repo", "emptyDir": {}}]}}}})


def as_served(obj: dict) -> dict:
    """``obj`` as the API server hands it back in a LIST: canonical quantities, defaults added, empty
    maps dropped, no kind/apiVersion."""
    live = copy.deepcopy({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")})
    live["metadata"].update(resourceVersion="42", uid="u-1", generation=3)
    pod = live["spec"]["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst")
    pod["containers"][0]["resources"]["limits"]["memory"] = "4Gi"
    pod["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    del pod["volumes"][0]["emptyDir"]
    live["status"] = {"readyReplicas": 1}
    return live


def test_the_served_form_of_what_we_rendered_is_up_to_date():
    desired = deployment()
    assert up_to_date(desired, as_served(desired))


def test_the_hpa_replica_count_is_not_a_difference():
    desired = deployment()
    live = as_served(desired)
    live["spec"]["replicas"] = 3
    assert up_to_date(desired, live)


def test_a_hand_edit_that_kept_our_annotation_is_found_and_named():
    desired = deployment()
    live = as_served(desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    assert stale_field(desired, live) == "spec.template.spec.containers[0].image"
    live = as_served(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "4095Mi"
    assert stale_field(desired, live) == "spec.template.spec.containers[0].resources.limits.memory"


def test_absent_or_another_hash_is_not_up_to_date():
    desired = deployment()
    assert stale_field(desired, None) == "absent"
    assert stale_field(desired, as_served(deployment(image="img:2"))) == "spec hash"


def test_a_quantity_outside_a_resource_map_compares_as_text():
    desired = deployment(env=[{"name": "SIZE", "value": "4096Mi"}])
    live = as_served(desired)
    live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "4Gi"
    assert stale_field(desired, live) == "spec.template.spec.containers[0].env[0].value"
