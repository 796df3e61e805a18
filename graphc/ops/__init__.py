"""Op declarations (registry.py) and the public functions that build them, by family."""
