"""The HTTP layer: a thin FastAPI application over the service."""

from authgate.server.app import create_app

__all__ = ["create_app"]
