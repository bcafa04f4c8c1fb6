"""Is the Hugging Face hub reachable? A quick check so offline users get an answer in a
second instead of after the hub client's retries (about 45 s).

When it is not reachable, loaders pass ``local_files_only=True``: what is in the local
Hugging Face cache still loads, anything else fails at once with a clear message.
"""
from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse


@functools.lru_cache(maxsize=None)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True unless ``HF_HUB_OFFLINE`` is set or the hub's host cannot be resolved / connected."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
