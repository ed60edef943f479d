"""authgate: JWT authentication done right."""
