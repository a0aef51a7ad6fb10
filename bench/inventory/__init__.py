"""Inventory benchmark: bulk-import throughput and device-list latency, end to end.

What is measured, and why
-------------------------
The service runs as a real, separate process (``gpuinv serve``, one uvicorn worker) on a
fresh database and is driven only over HTTP, as the portal and the sync worker drive it.
For each backend (SQLite, PostgreSQL) and each fleet size (by default 1k, 10k, 100k
devices) the benchmark reports:

1. ``importInventory`` throughput. Realistic device documents (GPU servers of several
   vendors and models, as in api/demo.py: 8 GPUs each or 4 for L40S, gputype/location/tier
   tags, five sites, tenants, up to four InfiniBand ports) are sent 5,000 per request.
   Devices per second = fleet size / wall time of all batches. Request bodies are encoded
   before the clock starts, so client-side JSON work is not counted. Then the same
   batches again: a re-import in which every device is unchanged, the everyday case of
   a periodic sync.
2. Device-list latency: p50/p95/p99 over N requests, after a warm-up, on one keep-alive
   connection, for three query shapes: a filtered first page (status, GPU vendor, site),
   the same filter on a page from the middle of the filtered list (cursor), and an
   unfiltered first page. Pages are keyset-paginated, so these should stay flat as the
   fleet grows; the table puts the sizes side by side to show whether they do. A query
   shape that is very slow gets a time budget (``--budget``) instead of N requests; the
   table then says how many requests it measured (``n=``).

The database is measured as the service's own import left it (planner statistics
included: a fresh PostgreSQL table has none until ANALYZE). ``--analyze`` adds an
ANALYZE after the imports, as autovacuum would soon after a bulk load on a production
server (the report says whether autovacuum is on for the server at hand).

Nothing here asserts on timing: the figures are printed for a human to judge. Wrong
import counts or GraphQL errors are reported as problems, since they make figures void.

Run ``python -m bench.inventory --help`` for the options; ``--quick`` is a 1k smoke run.

The package: ``workload`` (the queries and the fleet, encoded), ``measure`` (one backend at
one size), ``report`` and ``__main__`` (the command line). The client, the fleet's
documents, the import, percentiles and the table are bench/'s, shared with the other
benchmarks.
"""
