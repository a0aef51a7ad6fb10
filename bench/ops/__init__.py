"""Capacity views, metrics, the dashboard, backup and restore, at fleet sizes 1k to 100k.

What is measured, and why (issue 7, "Performance")
--------------------------------------------------
For each size N and backend: one ``gpuinv serve`` (one worker) on a fresh database; N
realistic GPU servers (bench/fleet.py's fleet: 8-GPU NVIDIA/AMD/Intel and 4-GPU L40S
servers on five sites), spread over three tenants and none, imported through the API; then
N/2 allocations: 70% whole servers, 30% 2-GPU slices (16 CPU, 128 GiB each). The
allocations are written in bulk, in the same rows a claim writes (allocation,
allocation_device, the device's free amounts and status; the triggers fill the change
feed), because N/2 claims over HTTP would take hours at 100k and the figures measured here
only read. The database's invariant (every device's total minus free equals what its
active allocations hold) is checked before anything is timed. On PostgreSQL a VACUUM
(ANALYZE) follows, as autovacuum would after that much churn.

1. ``capacity``: the full view (total, per site, per tenant, GPU models, four amounts of
   four resources) over HTTP, keep-alive, after warm-up: p50/p99 over ``--requests``.
   Also a one-site view, and a /metrics scrape (which reads the same view plus counts).
2. The dashboard's first load in Debian's headless Chromium (Playwright), the token already
   in the tab's session storage: navigation start to the utilization figure on screen,
   each time in a new browser context (nothing cached); median and worst of 5.
3. ``gpuinv backup`` of the whole database, and ``gpuinv restore`` of that file into a new
   empty database: seconds, rows/s and the file's size.

Percentiles are nearest-rank (bench/stats.py). Figures are printed; nothing is asserted
about time. ``python -m bench.ops --help``.

The package: ``bulk`` (the allocations written straight into the database, and the
invariant checked before timing) and ``__main__`` (the measurements and the table).
"""
