"""Text messages: the outbox every message goes through, and the gateways that deliver them."""
