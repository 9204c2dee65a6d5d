"""Adapters from other wire formats onto ErrorReport (each feeds the one capture path)."""
