"""The authgate command line (``authgate``): it parses arguments and calls the service
layer only. Each group of commands lives in its own module and registers on :data:`main`.
"""

from authgate.cli import admin as _admin  # noqa: F401 (registers its commands)
from authgate.cli import server as _server  # noqa: F401 (registers its commands)
from authgate.cli._core import main
from authgate.cli.server import do_init

__all__ = ["do_init", "main"]
