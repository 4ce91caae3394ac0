"""Channel variables: what admins see in `core show channel`, and what the dialplan reads
when a controller hands a call back (dialplans/extensions.conf, `ivr-after`)."""

from __future__ import annotations

import json
from typing import Callable

from ivr import events as ev
from ivr.telephony.sanitize import agi_value

CONTEXT_LIMIT = 1000  # IVR_CONTEXT, the call's context for the agent, in characters


def transfer_variables(queue: str, context: dict) -> dict[str, str]:
    """IVR_QUEUE, IVR_REASON, IVR_PRIORITY and IVR_CONTEXT for a transfer, sanitised; the
    caller sets IVR_ACTION=transfer after these, so the dialplan never sees half a handover."""
    payload = json.dumps(context, ensure_ascii=True, default=str)
    return {"IVR_QUEUE": agi_value(queue), "IVR_REASON": agi_value(context.get("reason", "")),
            "IVR_PRIORITY": agi_value(context.get("priority", "normal")),
            "IVR_CONTEXT": agi_value(payload, CONTEXT_LIMIT)}


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
