"""After prime_decoders(), decoding our resources never builds a msgspec decoding table: the lazy
build is the window in which a second thread decoding the same type crashed the process (SIGSEGV).
Runs in a fresh interpreter, where nothing has been decoded yet."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import json, sys
import msgspec
from lightkube.core import decoders
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.models.meta_v1 import Status
from multus_eni.kube.decoding import prime_decoders

built = []

def profile(frame, event, arg):
    # msgspec calls this Python helper only while it builds a Struct type's table.
    if event == "call" and frame.f_code.co_name == "get_class_annotations":
        built.append(frame.f_locals.get("obj").__name__)

def decode_all():
    node = {"metadata": {"name": "n"}, "spec": {"providerID": "aws:///a/i-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    msgspec.json.decode(json.dumps(node), type=Node)
    msgspec.json.decode(json.dumps(node), type=Node.Status)
    msgspec.json.decode(json.dumps({"metadata": {"name": "p"}, "spec": {"containers": []}}), type=Pod)
    msgspec.json.decode(json.dumps({"metadata": {"name": "l"}, "spec": {"holderIdentity": "x"}}), type=Lease)
    msgspec.json.decode(json.dumps({"metadata": {"name": "e"}, "involvedObject": {"name": "n"}}), type=Event)
    msgspec.json.decode(json.dumps({"code": 409, "message": "conflict"}), type=Status)
    decoders.decode_list(json.dumps({"items": [node], "metadata": {"resourceVersion": "1"}}).encode(), Node)

prime_decoders()
sys.setprofile(profile)
decode_all()
primed = list(built)
# Control: a type outside the primed modules is built lazily, so the detector sees builds.
msgspec.json.decode(json.dumps({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {}}}), type=Deployment)
sys.setprofile(None)
print(json.dumps({"primed": primed, "control": built[len(primed):]}))
"""


def test_decoding_our_resources_builds_no_table_after_priming() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["control"], "the detector saw no lazy build at all: it would not catch one either"
    assert result["primed"] == [], f"tables built lazily after prime_decoders(): {result['primed']}"
