"""Context collectors: one module per backend behind one `Collector` interface.

Build them with `build_collectors(Settings.from_env().collectors, store)` and close them
with `close_collectors(...)`. Timeouts, concurrency and circuit breaking live in the enrichment
queue (capture/enrichment.py), not in the collectors.
"""

from errorreplay_server.collectors.base import Collector, CollectorResult, Window, WindowSpec
from errorreplay_server.collectors.factory import build_collectors, close_collectors
from errorreplay_server.collectors.settings import CollectorSettings

__all__ = [
    "Collector",
    "CollectorResult",
    "CollectorSettings",
    "Window",
    "WindowSpec",
    "build_collectors",
    "close_collectors",
]
