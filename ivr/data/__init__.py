"""Customer data and the data actions that `lookup` steps call."""
