"""Session fixtures: one local world per test session.

Tests isolate themselves by names and labels, never by new worlds. Set
MULTUS_ENI_WORLD=<dir> to reuse a world started with `multus-eni sandbox up --dir <dir>`
(fast iteration); otherwise the session starts its own in a temp folder and the world
daemon exits with the test process, even when the run is interrupted.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from multus_eni.sandbox.info import WorldInfo

WORLD_NODES = 3
WORLD_AZS = 2


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorldInfo]:
    from multus_eni.sandbox.cli import start_world, stop_world

    if existing := os.environ.get("MULTUS_ENI_WORLD"):
        yield WorldInfo.load(Path(existing))
        return
    directory = tmp_path_factory.mktemp("world")
    args = argparse.Namespace(
        dir=directory, nodes=WORLD_NODES, azs=WORLD_AZS, region="eu-west-2", instance_type="m5.large",
        attach_delay=0.3, detach_delay=0.3, no_netns=False,
    )  # fmt: skip
    start_world(args, owner_pid=os.getpid(), progress=lambda line: None)
    try:
        yield WorldInfo.load(directory)
    finally:
        stop_world(directory)
