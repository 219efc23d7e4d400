"""The supervised capture pipeline and the latest-frame cache."""
