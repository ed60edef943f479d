"""The guard: authgate.guard against a real server and real app servers."""
