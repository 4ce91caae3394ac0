"""What admins see of a call in Asterisk: channel variables for `core show channel`."""

from __future__ import annotations

from typing import Callable

from ivr import events as ev


def mirror_call_state(show: Callable[[str, str], None]) -> Callable[[ev.Event], None]:
    """An event subscriber that sets IVR_SCENE, IVR_CALL_ID and IVR_FLOW_VERSION on the channel.

    `show` queues a variable for the transport's next command; one SET per scene change, not per
    step, because each is a round trip on the call's connection."""

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Scene):
            show("IVR_SCENE", event.id)
        elif isinstance(event, ev.CallStart):
            show("IVR_CALL_ID", event.call_id)
            show("IVR_FLOW_VERSION", event.flow_version)

    return on_event
