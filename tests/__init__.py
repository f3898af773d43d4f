"""pellucid's test suite."""
