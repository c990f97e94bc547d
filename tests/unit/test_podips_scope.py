"""Scoped pod-IP passes (plan/podip_scope.py): the scope's closure, and the property that makes
scoped passes safe — for every ENI in a closed scope, planning only the scope's pods and ENIs
gives exactly the full plan's answer."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from multus_eni.plan.netstatus import PodView
from multus_eni.plan.podip_model import Memory, PodIPPlan
from multus_eni.plan.podip_scope import ClusterIndex, Scope

from .podips_fixtures import NOW, eni, entry, node, plan, pod

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 13)]


def _index(pods: list[PodView], nodes, enis) -> ClusterIndex:
    return ClusterIndex().sync({p.uid: p for p in pods}, {n.name: n for n in nodes}, {e.id: e for e in enis})


def _close(index: ClusterIndex, limit: int = 100, **seeds: Any) -> Scope:
    scope = index.close(**seeds, limit=limit)
    assert scope is not None
    return scope


# -- the closure, case by case ------------------------------------------------------------------

NODES = [node("node-1", "i-1"), node("node-2", "i-2"), node("node-3", "i-3")]
ENIS = [
    eni("eni-1", MACS[0], "i-1", secondaries=("10.0.16.50",), ledger=("10.0.16.50",)),
    eni("eni-2", MACS[1], "i-2", primary="10.0.16.11", secondaries=("10.0.16.60",), ledger=("10.0.16.60",)),
    eni("eni-3", MACS[2], "i-3", primary="10.0.16.12"),
]


def test_a_new_pod_scopes_its_nodes_enis_and_its_neighbours_only() -> None:
    old = pod("old", "node-1", entry("app/n", "net1", ["10.0.16.50"], MACS[0]))
    new = pod("new", "node-1", entry("app/n", "net1", ["10.0.16.51"], MACS[0]))
    elsewhere = pod("far", "node-2", entry("app/n", "net1", ["10.0.16.60"], MACS[1]))
    index = _index([old, new, elsewhere], NODES, ENIS)

    scope = _close(index, pods=[new.uid], instances=["i-1"])

    assert scope == Scope(frozenset({"eni-1"}), frozenset({old.uid, new.uid}), frozenset({"i-1"}))


def test_an_address_floating_to_another_node_scopes_both_nodes() -> None:
    # 10.0.16.50 is on eni-1 (node-1); its pod now runs on node-2.
    moved = pod("vip", "node-2", entry("app/n", "net1", ["10.0.16.50"], MACS[1]))
    index = _index([moved], NODES, ENIS)

    scope = _close(index, pods=[moved.uid], instances=["i-2"])

    assert scope.enis == {"eni-1", "eni-2"}
    assert scope.instances == {"i-1", "i-2"}


def test_a_deleted_pods_addresses_pull_in_the_eni_holding_them() -> None:
    index = _index([], NODES, ENIS)

    scope = _close(index, ips=["10.0.16.60"])

    assert scope.enis == {"eni-2"}


def test_pods_contesting_an_address_are_all_in_scope() -> None:
    a = pod("a", "node-1", entry("app/n", "net1", ["10.0.16.70"], MACS[0]))
    b = pod("b", "node-3", entry("app/n", "net1", ["10.0.16.70"], MACS[2]))
    index = _index([a, b], NODES, ENIS)

    scope = _close(index, pods=[a.uid])

    assert scope.pods == {a.uid, b.uid}
    assert scope.enis == {"eni-1", "eni-3"}


def test_an_address_we_just_wrote_counts_before_ec2_shows_it() -> None:
    vip = pod("vip", "node-3", entry("app/n", "net1", ["10.0.16.80"], MACS[2]))
    index = _index([vip], NODES, ENIS)

    assert _close(index, pods=[vip.uid], recent_owned={"eni-1": {"10.0.16.80"}}).enis == {"eni-1", "eni-3"}


def test_a_scope_larger_than_the_limit_asks_for_a_full_pass() -> None:
    index = _index([], NODES, ENIS)

    assert index.close(instances=["i-1", "i-2", "i-3"], limit=2) is None
    assert index.close(instances=["i-1", "i-2"], limit=2) is not None


def test_finished_pods_and_pods_without_a_node_claim_nothing() -> None:
    done = pod("done", "node-2", entry("app/n", "net1", ["10.0.16.50"], MACS[1]), phase="Succeeded")
    pending = pod("pending", None, entry("app/n", "net1", ["10.0.16.50"], MACS[1]))
    index = _index([done, pending], NODES, ENIS)

    scope = _close(index, instances=["i-1"])

    assert scope.pods == set()
    assert scope.enis == {"eni-1"}


# -- the property: a closed scope plans exactly like a full pass ----------------------------------

POOL = [f"10.0.16.{i}" for i in range(100, 114)] + ["2a05:d01c:0:1::10", "2a05:d01c:0:1::11"]


def _random_cluster(rng: random.Random):
    nodes = [node(f"node-{n}", f"i-{n}", instance_type=rng.choice(["m5.large", "m5.24xlarge"])) for n in range(5)]
    free = POOL[:]
    rng.shuffle(free)
    enis, macs_of = [], {}
    for k in range(rng.randint(3, 8)):
        instance = rng.choice([f"i-{n}" for n in range(5)] + [None])
        present = tuple(free.pop() for _ in range(rng.randint(0, 3)) if free)
        owned = tuple(ip for ip in present if rng.random() < 0.7) + tuple(
            ip for ip in rng.sample(POOL, 2) if ip not in present and rng.random() < 0.3
        )
        v4 = tuple(ip for ip in present if ":" not in ip)
        v6 = tuple(ip for ip in present if ":" in ip)
        primary = f"10.0.16.{20 + k}"
        enis.append(eni(f"eni-{k}", MACS[k], instance, primary=primary, secondaries=v4, ipv6s=v6, ledger=owned))
        if instance:
            macs_of.setdefault(instance, []).append(MACS[k])
    pods = []
    for p in range(rng.randint(0, 12)):
        where = rng.choice([*nodes, None])
        macs = macs_of.get(where.instance_id, []) if where else []
        mac = rng.choice([*macs, None, MACS[11]])
        ips = rng.sample(POOL, rng.choice([1, 1, 2]))
        pods.append(
            pod(
                f"p{p}",
                where.name if where else None,
                entry("app/n", "net1", ips, mac),
                phase=rng.choice(["Running", "Running", "Pending", "Succeeded"]),
                created=f"2025-01-01T00:00:{rng.randint(0, 59):02d}Z",
                deleting=rng.random() < 0.15,
            )
        )
    unwanted = {
        (e.id, ip): NOW - rng.choice([5.0, 100.0]) for e in enis for ip in e.private_ips[1:] if rng.random() < 0.5
    }
    blocked = {ip: NOW + 10 for ip in POOL if rng.random() < 0.05}
    return nodes, enis, pods, Memory(unwanted_since=unwanted, blocked=blocked)


def _work(result: PodIPPlan, eni_id: str):
    return result.work.get(eni_id)


def _problems(result: PodIPPlan, uids: Iterable[str]) -> list[str]:
    wanted = set(uids)
    return sorted(repr(p) for p in result.problems if p.pod is not None and p.pod.uid in wanted)


def test_for_every_eni_in_a_closed_scope_the_scoped_plan_equals_the_full_plan() -> None:
    checked = 0
    for seed in range(400):
        rng = random.Random(seed)
        nodes, enis, pods, memory = _random_cluster(rng)
        full = plan(pods, enis, nodes, memory=memory)
        index = _index(pods, nodes, enis)
        seeds: dict[str, list[str]] = {
            "pods": [p.uid for p in rng.sample(pods, min(len(pods), rng.randint(0, 2)))],
            "instances": rng.sample([n.instance_id for n in nodes], rng.randint(0, 1)),
            "enis": rng.sample([e.id for e in enis], rng.randint(0, 1)),
            "ips": rng.sample(POOL, rng.randint(0, 1)),
        }
        scope = _close(index, **seeds)
        scoped = plan(
            [p for p in pods if p.uid in scope.pods],
            [e for e in enis if e.id in scope.enis],
            nodes,
            memory=memory,
        )
        for eni_id in scope.enis:
            assert _work(scoped, eni_id) == _work(full, eni_id), f"seed {seed}: work on {eni_id}"
            assert scoped.due.get(eni_id) == full.due.get(eni_id), f"seed {seed}: timer of {eni_id}"
        assert set(scoped.work) <= scope.enis, f"seed {seed}"
        assert {k: v for k, v in full.unwanted_since.items() if k[0] in scope.enis} == scoped.unwanted_since
        assert _problems(scoped, scope.pods) == _problems(full, scope.pods), f"seed {seed}"
        checked += bool(scope.enis) and any(_work(full, e) for e in scope.enis)
    # The generator must produce scopes with work in them, or the property is vacuous.
    assert checked > 100


def test_an_index_kept_in_sync_across_changes_closes_like_a_fresh_one() -> None:
    rng = random.Random(7)
    kept = ClusterIndex()
    nodes, enis, pods, _ = _random_cluster(rng)
    for step in range(150):
        # Each object either stays the same object (skipped by identity) or is replaced or removed.
        new_nodes, new_enis, new_pods, _ = _random_cluster(rng)
        pods = _mix(rng, pods, new_pods, lambda p: p.uid)
        enis = _mix(rng, enis, new_enis, lambda e: e.id)
        nodes = new_nodes if rng.random() < 0.2 else nodes
        kept.sync({p.uid: p for p in pods}, {n.name: n for n in nodes}, {e.id: e for e in enis})
        fresh = _index(pods, nodes, enis)
        seeds = [{"pods": [p.uid]} for p in pods] + [{"enis": [e.id]} for e in enis]
        seeds += [{"instances": [f"i-{n}"]} for n in range(5)] + [{"ips": [ip]} for ip in POOL]
        for seed in seeds:
            assert kept.close(**seed, limit=100) == fresh.close(**seed, limit=100), f"step {step}: {seed}"


def _mix(rng: random.Random, old: list, new: list, key) -> list:
    by_key = {key(o): o for o in old}
    out = []
    for item in new:
        roll = rng.random()
        if roll < 0.5 and key(item) in by_key:
            out.append(by_key[key(item)])  # unchanged: the very same object
        elif roll < 0.9:
            out.append(item)
    return out
