"""Build msgspec's decoding tables for lightkube's typed resources once, before threads decode them.

lightkube 1.0.1 decodes responses with msgspec (0.22). msgspec builds a Struct type's decoding
table lazily, on the first decode of that type, and publishes the table on the class *before* it
fills in the field types (`StructInfo_Convert` in msgspec's _core.c; only free-threaded builds
guard it). Filling them evaluates annotations in Python, so the GIL can pass to another thread,
which finds the published table, decodes with its NULL field types and crashes the process
(SIGSEGV). Seen as the world daemon exiting with -11 while it created Nodes from 8 threads: one
thread in msgspec's `get_class_annotations`, another crashed in `json_decode_struct_map_inner`.
The controller's kube-write pool (Node patches from 8 threads) had the same window.

A table, once complete, is never rebuilt; building the tables of every resource we can be sent
on one thread, first, closes the window for good. Costs ~50 ms once per process.
"""

from __future__ import annotations

import inspect
import threading
from types import ModuleType

import msgspec
from lightkube.core import decoders
from lightkube.models import meta_v1
from lightkube.resources import apiextensions_v1, coordination_v1, core_v1

# Every typed resource the product or the sandbox reads lives in these modules.
RESOURCE_MODULES: tuple[ModuleType, ...] = (core_v1, coordination_v1, apiextensions_v1)

_lock = threading.Lock()
_done = False


def prime_decoders() -> None:
    """Build the decoding tables of every resource in RESOURCE_MODULES (and of errors, lists and
    watch events) on the calling thread. Idempotent; call before a second thread talks to the
    apiserver."""
    global _done
    with _lock:
        if _done:
            return
        for cls in _structs():
            # A Decoder converts the type and, recursively, every Struct type in its fields.
            msgspec.json.Decoder(cls)
        _done = True


def _structs() -> list[type]:
    found: list[type] = [meta_v1.Status, decoders.ListMetadata, decoders.WatchEvent]
    for module in RESOURCE_MODULES:
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, msgspec.Struct) and obj.__module__ == module.__name__:
                found.append(obj)
                # The list model lightkube makes on a type's first list has a table of its own.
                found.append(decoders._get_list_model(obj)[0])
    return found
