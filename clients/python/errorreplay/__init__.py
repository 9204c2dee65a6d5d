"""errorreplay client: the generated stubs in errorreplay.v1, and a small client over them.

`ErrorReplayClient` (asyncio) and `SyncErrorReplayClient` handle the channel, the token, deadlines and
retries; `capture_exception` builds an ErrorReport from a Python exception.
"""

from errorreplay.client import DEFAULT_TIMEOUT, ErrorReplayClient, RetryPolicy, capture_exception
from errorreplay.sync_client import SyncErrorReplayClient

__all__ = ["DEFAULT_TIMEOUT", "ErrorReplayClient", "RetryPolicy", "SyncErrorReplayClient", "capture_exception"]
