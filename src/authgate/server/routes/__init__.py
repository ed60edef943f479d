"""The routers of the server."""
