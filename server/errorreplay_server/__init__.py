"""errorreplay server: a DVR for production errors."""
