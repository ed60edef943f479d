"""Storage: Protocols the service layer owns, and their SQL and Redis implementations."""
