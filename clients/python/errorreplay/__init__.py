"""errorreplay client: generated stubs in errorreplay.v1."""
