"""NodeENI status for an ENI a pod holds (host-device moved it into the pod's namespace)."""

from __future__ import annotations

import dataclasses

from multus_eni.agent.annotations import REPORT_ANNOTATION, InterfaceReport, render_report
from multus_eni.controller.observe import node_info
from tests.unit.plan_fixtures import eni, node, nodeeni, plan


def reported(n, *entries: InterfaceReport):
    """The node as the controller sees it once its agent wrote `entries` (through observe)."""
    obj = {"metadata": {"name": n.name, "annotations": {REPORT_ANNOTATION: render_report(list(entries))}}}
    return dataclasses.replace(n, interfaces=node_info(obj).interfaces)


def test_an_eni_in_a_pod_counts_as_ready_and_shows_interface_state_in_pod():
    ne, n1 = nodeeni(), node("n1")
    held = eni(ne, n1, attached_to=n1)
    in_pod = InterfaceReport(held.mac, held.id, "multus", True, 9001, True, in_pod=True)
    status = plan([ne], [reported(n1, in_pod)], [held]).nodeenis["multus"].status
    (entry,) = status["attachments"]
    assert (entry["interfaceState"], entry["interfaceName"]) == ("in-pod", "multus")
    assert status["ready"] == 1


def test_an_eni_on_the_node_still_shows_up_or_missing():
    ne, n1 = nodeeni(), node("n1")
    held = eni(ne, n1, attached_to=n1)
    up = InterfaceReport(held.mac, held.id, "multus", True, 9001, True)
    status = plan([ne], [reported(n1, up)], [held]).nodeenis["multus"].status
    assert (status["attachments"][0]["interfaceState"], status["ready"]) == ("up", 1)
    status = plan([ne], [reported(n1)], [held]).nodeenis["multus"].status
    assert (status["attachments"][0]["interfaceState"], status["ready"]) == ("missing", 0)
