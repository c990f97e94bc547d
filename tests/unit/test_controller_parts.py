"""The controller's small pure-ish parts: the trigger's debounce, node tombstones, Node -> NodeInfo."""

from __future__ import annotations

import threading

from multus_eni.controller.loop import Trigger
from multus_eni.controller.observe import Tombstones, node_info
from multus_eni.plan.model import NodeInfo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_notifications_is_one_due_time_and_a_later_one_never_postpones_it() -> None:
    clock = Clock()
    trigger = Trigger(clock)
    trigger.notify(0.1)
    clock.now += 0.05
    trigger.notify(0.1)  # would be due at 100.15: the earlier 100.1 stands
    clock.now = 100.1
    assert trigger.wait(until=200) is True
    # Consumed: nothing is due any more.
    assert trigger.wait(until=clock.now) is False


def test_an_urgent_notification_brings_the_due_time_forward() -> None:
    clock = Clock()
    trigger = Trigger(clock)
    trigger.notify(5)
    trigger.notify(0)
    assert trigger.wait(until=clock.now) is True


def test_close_wakes_a_waiting_loop() -> None:
    trigger = Trigger()
    woke = threading.Event()

    def waiter() -> None:
        trigger.wait(until=float("inf"))
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    trigger.close()
    assert woke.wait(5)
    thread.join(5)


def _node(name: str, uid: str = "") -> NodeInfo:
    return NodeInfo(name, uid or f"uid-{name}", {}, "i-1", "eu-west-2a", "m5.large")


def test_a_node_seen_and_then_gone_is_reported_deleted_until_it_comes_back() -> None:
    clock = Clock()
    tombstones = Tombstones(keep_seconds=60, clock=clock)
    assert [n.name for n in tombstones.nodes([_node("a"), _node("b")])] == ["a", "b"]
    after = tombstones.nodes([_node("a")])
    assert [(n.name, n.exists) for n in after] == [("a", True), ("b", False)]
    back = tombstones.nodes([_node("a"), _node("b")])
    assert all(n.exists for n in back) and len(back) == 2


def test_tombstones_are_forgotten_after_a_while_and_never_invented_after_a_restart() -> None:
    clock = Clock()
    fresh = Tombstones(keep_seconds=60, clock=clock)
    assert fresh.nodes([]) == []  # a restarted controller knows of no deletion: the grace period applies
    fresh.nodes([_node("a")])
    fresh.nodes([])
    clock.now += 61
    assert fresh.nodes([]) == []


def test_node_info_reads_where_a_node_runs_from_the_node_object() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "uid": "u1",
            "labels": {"topology.kubernetes.io/zone": "eu-west-2b", "node.kubernetes.io/instance-type": "m5.large"},
            "annotations": {
                "multus-eni.io/interfaces": '{"interfaces": [{"mac": "02:AA:00:00:00:01", "eniID": "eni-1", '
                '"name": "multus", "up": true, "mtu": 9001, "ready": true}]}'
            },
        },
        "spec": {"providerID": "aws:///eu-west-2b/i-0123456789abcdef0"},
    }
    info = node_info(node)
    assert (info.name, info.uid, info.instance_id, info.az, info.instance_type) == (
        "n1",
        "u1",
        "i-0123456789abcdef0",
        "eu-west-2b",
        "m5.large",
    )
    assert info.interfaces is not None
    assert info.interfaces["02:aa:00:00:00:01"].ready is True
    assert node_info({"metadata": {"name": "bare"}, "spec": {}}).instance_id is None
    assert node_info({"metadata": {"name": "bare"}, "spec": {}}).interfaces is None
