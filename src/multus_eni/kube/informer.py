"""List+watch one resource kind into a thread-safe in-memory store of plain dicts.

The controller is level-triggered: it does not care *which* object changed, only that
something did, so `on_change()` takes no arguments and the reconcile loop re-reads the
stores. The store holds plain dicts (JSON as the apiserver sent it, minus what the
`transform` strips) so the pure planning code can read it without lightkube types.
Stored dicts are shared, never copied: treat them as read-only.

We drive the HTTP requests through lightkube's generic client rather than
`Client.list`/`Client.watch` because in lightkube 1.0.1 (pinned) the high-level watch
cannot ask for bookmarks, decodes every event into typed models (memory at 1000 nodes),
and gives no handle to close a blocked stream from another thread on `stop()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx2
from lightkube import Client
from lightkube.core import resource as lkres
from lightkube.core.generic_client import ALL_NS
from lightkube.core.selector import build_selector

log = logging.getLogger(__name__)

Key = tuple[str | None, str]  # (namespace or None for cluster-scoped, name)
Transform = Callable[[dict[str, Any]], dict[str, Any]]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop what no reconcile reads and that can dominate an object's size."""
    meta = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        annotations.pop(LAST_APPLIED)
    return obj


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace"), meta["name"])


def _same_ignoring_version(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # A write that changes nothing we keep (a node heartbeat once the transform has
    # dropped heartbeat times) still bumps resourceVersion; it must not cost a pass.
    def strip(o: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (o.get("metadata") or {}).items() if k != "resourceVersion"}
        return {**o, "metadata": meta}

    return strip(a) == strip(b)


class WatchExpired(Exception):
    """The resourceVersion we hold is too old (410 Gone): only a fresh list helps."""


class ApiFailure(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class Backoff:
    """Exponential backoff with jitter, for reconnecting to an apiserver that went away."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0):
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)


class Informer:
    """Keeps `items()` equal to the apiserver's view of one resource kind.

    `namespace=None` watches all namespaces for a namespaced resource. Call `start()`;
    `on_change()` runs on the informer's thread after the first list and after every
    change that survives `transform`, and must return quickly (it should only wake the
    reconcile loop).
    """

    def __init__(
        self,
        client: Client,
        resource: type[lkres.Resource],
        on_change: Callable[[], None],
        label_selector: str | Mapping[str, Any] | None = None,
        *,
        field_selector: str | Mapping[str, Any] | None = None,
        namespace: str | None = None,
        transform: Transform = strip_server_fields,
        page_size: int = 500,
        watch_timeout: tuple[int, int] = (300, 600),
        name: str | None = None,
    ):
        self._client = client
        self._resource = resource
        self._on_change = on_change
        self._labels = _selector(label_selector, for_fields=False)
        self._fields = _selector(field_selector, for_fields=True)
        self._namespaced = issubclass(resource, lkres.NamespacedResource)
        self._namespace = (namespace or ALL_NS) if self._namespaced else None
        self._transform = transform
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        info = lkres.api_info(resource)
        self.name = name or info.plural
        self._api_version, self._kind = info.resource.api_version, info.resource.kind

        self._lock = threading.Lock()
        self._store: dict[Key, dict[str, Any]] = {}
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._resource_version: str | None = None
        self._response: httpx2.Response | None = None
        self._thread: threading.Thread | None = None

    # -- public reads -------------------------------------------------------------

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._store.values())

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            return self._store.get((namespace, name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def resource_version(self) -> str | None:
        return self._resource_version

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Informer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            _interrupt(response)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff()
        need_list = True
        while not self._stopping.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                    backoff.reset()
                started = time.monotonic()
                if self._watch():
                    backoff.reset()
                elif time.monotonic() - started < 1.0:
                    # A watch the server ends at once, with nothing in it, must not become a hot loop.
                    self._stopping.wait(backoff.next_delay())
            except WatchExpired:
                log.info("watch of %s expired at resourceVersion %s; relisting", self.name,
                         self._resource_version)
                need_list = True
            except Exception as exc:
                if self._stopping.is_set():
                    break
                delay = backoff.next_delay()
                log.warning("%s of %s failed (%s); retrying in %.1fs",
                            "list" if need_list else "watch", self.name, _describe(exc), delay)
                self._stopping.wait(delay)
        log.debug("informer %s stopped", self.name)

    def _list(self) -> None:
        fresh: dict[Key, dict[str, Any]] = {}
        params: dict[str, Any] = {"limit": self._page_size}
        while True:
            body = self._get_json(params)
            for item in body.get("items") or ():
                # Items of a list of built-in kinds come without kind/apiVersion (watch
                # events carry them); Events and owner references need them.
                item.setdefault("apiVersion", self._api_version)
                item.setdefault("kind", self._kind)
                item = self._transform(item)
                fresh[object_key(item)] = item
            meta = body.get("metadata") or {}
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
        with self._lock:
            changed = not self._synced.is_set() or _differs(self._store, fresh)
            self._store = fresh
            self._resource_version = meta.get("resourceVersion")
        self._synced.set()
        log.debug("listed %d %s at resourceVersion %s", len(fresh), self.name, self._resource_version)
        if changed:
            self._notify()

    def _watch(self) -> bool:
        """Stream events until the server ends the watch; True when it made progress."""
        timeout_seconds = random.randint(*self._watch_timeout)
        params = {
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        # The server closes the stream after timeout_seconds: a read that takes much
        # longer than that means a dead connection.
        timeout = httpx2.Timeout(10.0, read=timeout_seconds + 30)
        progressed = False
        with self._open(params, watch=True, timeout=timeout) as response:
            for line in response.iter_lines():
                if self._stopping.is_set():
                    break
                if line:
                    self._apply(json.loads(line))
                    progressed = True
        return progressed

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code", 0)
            if code == 410:
                raise WatchExpired()
            raise ApiFailure(code, obj.get("message", "watch error"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self._resource_version = version
            return
        obj = self._transform(obj)
        key = object_key(obj)
        with self._lock:
            old = self._store.get(key)
            if kind == "DELETED":
                changed = self._store.pop(key, None) is not None
            else:
                self._store[key] = obj
                changed = old is None or not _same_ignoring_version(old, obj)
            self._resource_version = version
        if changed:
            self._notify()

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("on_change callback of informer %s failed", self.name)

    # -- HTTP through lightkube's generic client ----------------------------------

    def _params(self, extra: dict[str, Any]) -> dict[str, Any]:
        params = {"labelSelector": self._labels, "fieldSelector": self._fields, **extra}
        return {k: v for k, v in params.items() if v is not None}

    def _get_json(self, params: dict[str, Any]) -> dict[str, Any]:
        generic = self._client._client
        request = generic.prepare_request("list", res=self._resource, namespace=self._namespace,
                                          params=self._params(params))
        response = generic.send(generic.build_adapter_request(request))
        _raise_for_status(response)
        return response.json()

    def _open(self, params: dict[str, Any], *, watch: bool, timeout: httpx2.Timeout) -> _Stream:
        generic = self._client._client
        request = generic.prepare_request("list", res=self._resource, namespace=self._namespace,
                                          watch=watch, params=self._params(params))
        request.timeout = timeout
        response = generic.send(generic.build_adapter_request(request), stream=True)
        return _Stream(self, response)


class _Stream:
    """Registers the open response so `stop()` can close it, and always closes it."""

    def __init__(self, informer: Informer, response: httpx2.Response):
        self._informer, self._response = informer, response

    def __enter__(self) -> _Stream:
        self._informer._response = self._response
        # stop() sets the flag, then reads _response; we set _response, then read the flag:
        # whichever runs second sees the other, so a stop() during connect is never missed.
        if self._informer._stopping.is_set():
            _interrupt(self._response)
        if self._response.status_code >= 400:
            self._response.read()
            _raise_for_status(self._response)
        return self

    def iter_lines(self) -> Iterator[str]:
        return self._response.iter_lines()

    def __exit__(self, *exc: object) -> None:
        self._informer._response = None
        self._response.close()


def _interrupt(response: httpx2.Response) -> None:
    """Wake a thread blocked reading `response` from another thread.

    Closing the response does not: a `recv()` blocked in another thread only returns
    when the socket is shut down, which the reader then sees as end of stream.
    """
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed by the reader: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)


def _raise_for_status(response: httpx2.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    if response.status_code == 410:
        raise WatchExpired()
    raise ApiFailure(response.status_code, message)


def _differs(old: dict[Key, dict[str, Any]], new: dict[Key, dict[str, Any]]) -> bool:
    if old.keys() != new.keys():
        return True
    return any(not _same_ignoring_version(old[k], new[k]) for k in new)


def _selector(value: str | Mapping[str, Any] | None, *, for_fields: bool) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return build_selector(value, for_fields=for_fields) if value else None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

