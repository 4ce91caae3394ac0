"""Language understanding: number normalisation, yes/no, escapes and intent routing."""
