"""The scene engine: YAML scenes -> model -> a pure asyncio call runner. No telephony or web here."""
