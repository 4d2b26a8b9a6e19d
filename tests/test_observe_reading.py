"""What the watch compares (``deployments.observe.reading``): a change to what ``observe`` reads is a change,
anything else is not, so a pod's start-up wakes the reconciler once (when it is ready), not at every step."""

import copy

from deployments.names import ANNOTATION_TEMPLATE
from deployments.observe import observe, reading


def pod(**status) -> dict:
    return {"metadata": {"name": "ep-web-abc", "annotations": {ANNOTATION_TEMPLATE: "t1"}}, "status": status}


def condition(kind: str, value: str, **extra) -> dict:
    return {"type": kind, "status": value, "lastTransitionTime": "2026-12-04T00:00:00Z", **extra}


DEPLOYMENT = {"metadata": {"name": "ep-web", "generation": 2}, "spec": {"replicas": 1},
              "status": {"observedGeneration": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                         "conditions": [condition("Progressing", "True", reason="NewReplicaSetAvailable",
                                                  lastUpdateTime="2026-12-04T00:00:01Z")]}}


def changed(kind: str, before: dict, after: dict) -> bool:
    return reading(kind, before) != reading(kind, after)


def test_a_pod_starting_up_changes_the_reading_only_when_it_turns_ready():
    pending = pod(phase="Pending")
    scheduled = pod(phase="Pending", conditions=[condition("PodScheduled", "True")])
    creating = pod(phase="Pending", conditions=[condition("PodScheduled", "True")],
                   containerStatuses=[{"name": "inference", "ready": False,
                                       "state": {"waiting": {"reason": "ContainerCreating"}}}])
    started = pod(phase="Running", conditions=[condition("PodScheduled", "True"), condition("Ready", "False")],
                  containerStatuses=[{"name": "inference", "ready": False, "restartCount": 0,
                                      "state": {"running": {"startedAt": "2026-12-04T00:00:02Z"}}}])
    ready = copy.deepcopy(started)
    ready["status"]["conditions"][1]["status"] = "True"
    assert [changed("Pod", a, b) for a, b in [(pending, scheduled), (scheduled, creating), (creating, started),
                                              (started, ready)]] == [False, False, False, True]


def test_what_observe_derives_a_state_from_changes_the_reading():
    crashing = pod(phase="Running", containerStatuses=[{"name": "inference", "state": {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}])
    assert changed("Pod", pod(phase="Running"), crashing)
    unschedulable = pod(phase="Pending", conditions=[condition("PodScheduled", "False", reason="Unschedulable",
                                                               message="0/2 nodes are available")])
    assert changed("Pod", pod(phase="Pending"), unschedulable)
    deleting = copy.deepcopy(pod(phase="Running", conditions=[condition("Ready", "True")]))
    deleting["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:03Z"
    assert changed("Pod", pod(phase="Running", conditions=[condition("Ready", "True")]), deleting)
    other_template = pod(phase="Pending")
    other_template["metadata"]["annotations"][ANNOTATION_TEMPLATE] = "t2"
    assert changed("Pod", pod(phase="Pending"), other_template)

    for path, value in [(("metadata", "generation"), 3), (("spec", "replicas"), 2),
                        (("status", "updatedReplicas"), 0), (("status", "readyReplicas"), 0)]:
        edited = copy.deepcopy(DEPLOYMENT)
        edited[path[0]][path[1]] = value
        assert changed("Deployment", DEPLOYMENT, edited), path
    deadline = copy.deepcopy(DEPLOYMENT)
    deadline["status"]["conditions"][0].update(reason="ProgressDeadlineExceeded", message="took too long")
    assert changed("Deployment", DEPLOYMENT, deadline)


def test_timestamps_and_fields_observe_never_reads_leave_the_reading_alone():
    touched = copy.deepcopy(DEPLOYMENT)
    touched["status"]["conditions"][0]["lastUpdateTime"] = "2026-12-04T00:09:00Z"
    touched["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    touched["metadata"]["resourceVersion"] = "999"
    assert not changed("Deployment", DEPLOYMENT, touched)
    # and the two readings really do describe the same state
    pods = [pod(phase="Running", conditions=[condition("Ready", "True")])]
    assert observe(deployment=DEPLOYMENT, pods=pods, events=[], template_hash="t1") == \
        observe(deployment=touched, pods=pods, events=[], template_hash="t1")
