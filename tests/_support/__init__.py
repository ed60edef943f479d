"""What several test suites share: servers in a thread, HTTP helpers, token builders and
the test services (PostgreSQL, Redis).

pytest puts ``tests/`` on ``sys.path`` (its sub-folders are packages, ``tests/`` itself is
not), so the suites import this package as ``_support``.
"""
