"""The ``daskgif`` events channel: JSON-able messages from tasks, as Dask's structured events on :data:`TOPIC`;
:func:`relay` hands those a client gets to this process's :data:`bus`, where local tasks send theirs."""

from __future__ import annotations

import functools
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from daskgif.core.runtime import on_worker

__all__ = ["TOPIC", "emit", "bus", "relay", "relay_all"]

logger = logging.getLogger(__name__)

TOPIC = "daskgif"


class Bus:
    """This process's listeners of daskgif messages, from local tasks or relayed from a cluster."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[dict], None]] = []  # appended, removed and copied whole: thread-safe

    def subscribe(self, listener: Callable[[dict], None]) -> Callable[[], None]:
        """Call *listener* with every message; return the function that unsubscribes it."""
        self._listeners.append(listener)
        return functools.partial(self._listeners.remove, listener)

    def publish(self, msg: dict) -> None:
        """Hand *msg* to every listener; a listener that raises is logged, not propagated."""
        for listener in list(self._listeners):
            try:
                listener(msg)
            except Exception:
                logger.exception("daskgif event listener %r failed", listener)


bus = Bus()
_relaying = threading.Lock()
_relayed: dict[str | None, weakref.ref] = {}  # scheduler address -> the client relaying its messages


def emit(msg: dict) -> None:
    """Send *msg*: to the scheduler from a ``distributed`` worker, else to this process's :data:`bus`."""
    if on_worker():
        from distributed import get_worker

        get_worker().log_event(TOPIC, msg)
    else:
        bus.publish(msg)


def relay(client: Any) -> None:
    """Forward the daskgif messages that reach *client* to this process's :data:`bus`: through one running
    client per scheduler, since the scheduler sends each message to every client that asks."""
    address = getattr(client.scheduler, "address", None)
    with _relaying:  # two threads computing through two clients of one scheduler subscribe one of them
        relaying = _relayed.get(address)
        if relaying is not None and relaying() is not None and relaying().status == "running":
            return
        client.subscribe_topic(TOPIC, lambda event: bus.publish(event[1]))
        _relayed[address] = weakref.ref(client)


def relay_all() -> None:
    """:func:`relay` every running ``distributed.Client`` of this process: a graph may go to any of them
    (``client.compute``), the default or not."""
    if "distributed" in sys.modules:
        from distributed import Client

        for client in [c for c in list(Client._instances) if c.status == "running"]:
            relay(client)
