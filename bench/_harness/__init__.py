"""The harness the benches share, so that each script says only what it measures.

* ``servers``: ``serve()`` runs a real ``authgate serve`` (SQLite or a given database,
  ``--workers N``), ``Server.cli`` its command line, ``child()`` any other server process;
* ``db``: a fresh PostgreSQL schema per run, and read-only queries on what a server stored;
* ``procs``: CPU from ``/proc`` per process tree, per thread and for the machine, a
  ``CpuMeter`` over a window, and resident memory;
* ``load``: closed loops (tasks or threads) and open loops (Poisson arrivals), and the
  ``Window`` they measure; ``wrk``: a driver for wrk; ``fastclient``: a light HTTP client;
* ``stats``: medians over rounds and per-round ratios, percentiles, timeit-style loops;
* ``report``: the machine's description, tables, and ratios against named baselines.

Scripts import the modules they need (``from _harness.servers import serve``): the package
itself imports nothing, so that an app server a bench starts loads only what it uses.
"""
