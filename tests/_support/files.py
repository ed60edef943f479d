"""The process state that file-permission tests set for a moment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process umask set to ``mask`` inside the block, and restored after it."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
