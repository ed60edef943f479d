"""What several test suites share: authgate (or any ASGI app) served from a thread
(``live``), HTTP helpers (``http``), hand-made tokens (``tokens``), the command line
(``cli``), the test services PostgreSQL and Redis (``services``) and the umask (``files``).

pytest puts ``tests/`` on ``sys.path`` (its sub-folders are packages, ``tests/`` itself is
not), so the suites import this package as ``_support``.
"""
