"""The event inbox: parsed HTTP events waiting for their consumer, with back-pressure.

The one idea: a connection's parser turns each read into events faster than a slow consumer
(the peer on the other side of the proxy) may take them, so the events wait here and the
body bytes among them are counted; above the high-water mark the connection stops reading,
and it reads again once the consumer has taken it below half the mark. Only `Data` events
count: heads and ends are small. Used by both sides of the proxy: a downstream HTTP session
(`http_session.HttpSession`) and an upstream connection (`upstream.UpstreamHttp`). Who waits
for events, and how it is woken, is theirs: this is a plain queue, event-loop only.
"""

from __future__ import annotations

import collections

from osm.proxy import http1, transport


class EventInbox:
    """Events in arrival order; `events` may be read (not kept) by the owner, who changes
    them only through `push`, `pop` and `clear`, which keep the byte count and the
    connection's reading in step."""

    __slots__ = ("connection", "events", "high_water", "low_water", "queued")

    def __init__(self, connection: transport.Connection, high_water: int):
        self.connection = connection
        self.events: collections.deque[http1.Event] = collections.deque()
        self.queued = 0  # the body bytes among `events`
        self.high_water = high_water  # reading pauses above this
        self.low_water = high_water // 2  # and resumes below this

    def push(self, events: list[http1.Event]) -> None:
        """Queue what one read (or the end of the input) brought; pause reading when the
        queued body bytes are over the high-water mark."""
        for event in events:
            if isinstance(event, http1.Data):
                self.queued += len(event.data)
        self.events.extend(events)
        if self.queued > self.high_water:
            self.connection.pause_reading()

    def pop(self) -> http1.Event:
        """The oldest event (there must be one); reading resumes when the queued body bytes
        fall below the low-water mark."""
        event = self.events.popleft()
        if isinstance(event, http1.Data):
            self.queued -= len(event.data)
            if self.queued < self.low_water:
                self.connection.resume_reading()
        return event

    def clear(self) -> None:
        """Drop every queued event (their consumer took them as they were) and read again."""
        self.events.clear()
        self.queued = 0
        self.connection.resume_reading()
