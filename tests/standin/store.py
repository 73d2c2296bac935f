"""The object store: objects by (kind, namespace, name), resourceVersions, the change history and watches.

Every write goes through `write` or `remove`, so resourceVersion, history and watch events always agree. One
re-entrant lock (`cond`) guards it all, and the server's handlers and controller helpers share it.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field

from tests.standin.errors import ApiError
from tests.standin.kinds import Kind


@dataclass
class Stored:
    obj: dict
    owners: dict = field(default_factory=dict)  # apply.Owners


@dataclass(frozen=True)
class Change:
    rv: int
    type: str
    kind: Kind
    old: dict | None
    new: dict


class StreamDropped(Exception):
    """drop_watches() or stop(): the handler cuts the connection the way a restarting API server does."""


def key_of(kind: Kind, namespace: str | None, name: str) -> tuple[str, str, str]:
    return kind.kind, (namespace or "") if kind.namespaced else "", name


class Store:
    def __init__(self):
        self.cond = threading.Condition(threading.RLock())
        self.objects: dict[tuple, Stored] = {}
        self.history: list[Change] = []
        self.rv = 0
        self.compacted = 0
        self.epoch = 0
        self.stopping = False

    def get(self, key: tuple) -> Stored | None:
        return self.objects.get(key)

    def of_kind(self, kind: str, namespace: str | None = None) -> list[tuple[tuple, Stored]]:
        """(key, stored) of one kind (in one namespace), sorted by namespace and name."""
        return [(key, stored) for key, stored in sorted(self.objects.items())
                if key[0] == kind and (namespace is None or key[1] == namespace)]

    def write(self, kind: Kind, key: tuple, obj: dict, owners: dict) -> dict:
        """Store obj with the next resourceVersion and tell the watchers; returns a copy of what is stored."""
        old = self.objects.get(key)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = Stored(obj, owners)
        self._changed(kind, "MODIFIED" if old else "ADDED", old.obj if old else None, obj)
        return copy.deepcopy(obj)

    def remove(self, kind: Kind, key: tuple) -> dict:
        stored = self.objects.pop(key)
        self.rv += 1
        last = {**stored.obj, "metadata": {**stored.obj["metadata"], "resourceVersion": str(self.rv)}}
        self._changed(kind, "DELETED", stored.obj, last)
        return copy.deepcopy(last)

    def _changed(self, kind: Kind, type_: str, old: dict | None, new: dict) -> None:
        self.history.append(Change(self.rv, type_, kind, old, new))
        self.cond.notify_all()

    def compact(self) -> None:
        self.history.clear()
        self.compacted = self.rv

    def drop_streams(self) -> None:
        self.epoch += 1
        self.cond.notify_all()

    def stop(self) -> None:
        self.stopping = True
        self.cond.notify_all()

    def wait(self, ready, epoch: int, deadline: float | None):
        """What ready() returns once it is truthy; None at the deadline; StreamDropped when streams are cut."""
        while True:
            if self.epoch != epoch or self.stopping:
                raise StreamDropped()
            found = ready()
            if found:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.cond.wait(remaining)

    # ---- watches

    def watch(self, kind: Kind, selected, since: str, timeout: float | None, bookmarks: bool):
        """The event stream of a watch from `since` ("" or "0": the current state first, as ADDED events)."""
        with self.cond:
            epoch = self.epoch
            if since in ("", "0"):
                cursor = self.rv
                first = [{"type": "ADDED", "object": s.obj} for k, s in self.of_kind(kind.kind) if selected(s.obj)]
            elif int(since) < self.compacted:
                cursor = None
                first = [{"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {since} ({self.compacted})").status()}]
            else:
                cursor, first = int(since), []
            first = [json.dumps(event) for event in first]
        return self._stream(kind, selected, cursor, first, epoch, timeout, bookmarks)

    def _stream(self, kind, selected, cursor, first, epoch, timeout, bookmarks):
        for event in first:
            yield (event + "\n").encode()
        if cursor is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.cond:
                changes = self.wait(lambda: [c for c in self.history if c.rv > cursor and c.kind == kind],
                                    epoch, deadline)
                if changes is None:
                    if bookmarks:
                        yield (json.dumps({"type": "BOOKMARK", "object": {
                            "kind": kind.kind, "apiVersion": kind.api_version,
                            "metadata": {"resourceVersion": str(self.rv)}}}) + "\n").encode()
                    return
                cursor = changes[-1].rv
                events = [json.dumps(e) for e in (watch_event(c, selected) for c in changes) if e]
            for event in events:
                yield (event + "\n").encode()


def watch_event(change: Change, selected) -> dict | None:
    """The event a watch with these selectors sees: an object that starts or stops matching is ADDED or DELETED."""
    was = change.old is not None and selected(change.old)
    now_selected = change.type != "DELETED" and selected(change.new)
    if was and now_selected:
        return {"type": "MODIFIED", "object": change.new}
    if now_selected:
        return {"type": "ADDED", "object": change.new}
    if was:
        return {"type": "DELETED", "object": change.new}
    return None
