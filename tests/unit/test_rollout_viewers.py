"""kubectl's rollout-status conditions, one small object at a time (plain dicts, no client)."""

import pytest

from kit.readiness import Stalled, deployment_status, statefulset_status


def deployment(generation=2, observed=2, wanted=1, conditions=(), **status):
    return {
        "kind": "Deployment",
        "metadata": {"name": "prefect-worker-prod-main", "generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": observed, "conditions": list(conditions), **status},
    }


def statefulset(generation=2, observed=2, replicas=1, strategy=None, **status):
    spec = {"replicas": replicas}
    if strategy is not None:
        spec["updateStrategy"] = strategy
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "prefect-server", "generation": generation},
        "spec": spec,
        "status": {"observedGeneration": observed, **status},
    }


def test_deployment_waits_until_the_controller_has_seen_the_new_generation():
    message, done = deployment_status(
        deployment(generation=3, observed=2, replicas=1, updatedReplicas=1, availableReplicas=1))
    assert message == 'deployment "prefect-worker-prod-main": waiting for the spec update to be observed'
    assert done is False


def test_deployment_waits_for_updated_replicas():
    message, done = deployment_status(deployment(wanted=2, replicas=1, updatedReplicas=1, availableReplicas=1))
    assert not done and "1 out of 2 new replicas have been updated" in message


def test_deployment_waits_for_old_replicas_to_terminate():
    message, done = deployment_status(deployment(replicas=2, updatedReplicas=1, availableReplicas=1))
    assert not done and "1 old replicas are pending termination" in message


def test_deployment_waits_for_updated_replicas_to_become_available():
    message, done = deployment_status(deployment(replicas=1, updatedReplicas=1, availableReplicas=0))
    assert not done and "0 of 1 updated replicas are available" in message


def test_deployment_is_done_when_every_replica_is_updated_and_available():
    assert deployment_status(deployment(replicas=1, updatedReplicas=1, availableReplicas=1)) == (
        'deployment "prefect-worker-prod-main" successfully rolled out', True)


def test_deployment_past_its_progress_deadline_stalls():
    stuck = deployment(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
                       replicas=1, updatedReplicas=1, availableReplicas=0)
    with pytest.raises(Stalled, match="exceeded its progress deadline"):
        deployment_status(stuck)


def test_deployment_deadline_of_an_older_generation_is_not_judged_yet():
    # kubectl only reads conditions once the controller has observed the current generation.
    old = deployment(generation=3, observed=2,
                     conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}])
    assert deployment_status(old)[1] is False


def test_statefulset_with_no_observed_generation_is_waiting():
    assert statefulset_status(statefulset(generation=1, observed=0, readyReplicas=1))[1] is False


def test_statefulset_waits_for_ready_replicas():
    message, done = statefulset_status(statefulset(replicas=1, readyReplicas=0, updatedReplicas=1))
    assert not done and "waiting for 1 pods to be ready" in message


def test_statefulset_with_a_partition_waits_for_the_updated_pods():
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    rolling = statefulset(strategy=strategy, replicas=1, readyReplicas=1, updatedReplicas=0)
    rolled = statefulset(strategy=strategy, replicas=1, readyReplicas=1, updatedReplicas=1)
    message, done = statefulset_status(rolling)
    assert message == ('statefulset "prefect-server": waiting for partitioned roll out to finish: '
                       '0 out of 1 new pods have been updated')
    assert done is False
    assert statefulset_status(rolled)[1] is True


def test_statefulset_partition_leaves_the_lower_ordinals_alone():
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    assert statefulset_status(statefulset(strategy=strategy, replicas=3, readyReplicas=3, updatedReplicas=1))[1]


def test_statefulset_without_partition_compares_revisions():
    rolling = statefulset(replicas=1, readyReplicas=1, updatedReplicas=0, currentRevision="a", updateRevision="b")
    rolled = statefulset(replicas=1, readyReplicas=1, updatedReplicas=1, currentRevision="b", updateRevision="b")
    assert statefulset_status(rolling)[1] is False
    assert statefulset_status(rolled)[1] is True


def test_statefulset_on_delete_strategy_cannot_be_followed():
    with pytest.raises(Stalled, match="RollingUpdate"):
        statefulset_status(statefulset(strategy={"type": "OnDelete"}, readyReplicas=1))
