"""Built-in step types. Importing this package registers them all."""

from ivr.flow.steps import ask, control, handoff, lookup, menu, proactive, speak, visual  # noqa: F401
