"""Matchmaking benchmark: the engine alone, matchDevice over HTTP, concurrent claims, packing.

What is measured, and why (issue 4, "Performance"; DESIGN.md "Matchmaking", "Allocation")
-----------------------------------------------------------------------------------------
1. ``engine``: the pure engine (api/domain/matching) with no database and no HTTP. A
   CandidateIndex of 1k / 10k / 100k realistic candidates (8-GPU NVIDIA H100/H200/B200, AMD
   MI300X, Intel Gaudi3 and 4-GPU L40S servers on five sites, two InfiniBand fabrics a site,
   halls; some in maintenance, a quarter of the available ones held whole and some holding
   vcluster slices) answers a seeded stream of requests resolved against the seed's
   ten-filter profile (baremetal, vcluster and mks, with varied variables, some absent).
   Reported: the one-off index build, the one-off lazy path indexes, then p50/p99 of
   ``match()`` alone (requests are resolved beforehand), overall and per inventory type.
   The issue asks for cost growing far slower than the fleet: compare the columns.
2. ``http``: ``matchDevice`` as a client sees it. One ``gpuinv serve`` (one uvicorn worker)
   on a fresh database (SQLite and/or PostgreSQL), the fleet imported with importInventory
   in 5,000-device batches, two profiles saved (the seed's config as baremetal and as
   vcluster). The first dry run after the import is timed on its own (the service loads its
   index in the background at start and catches up with the import on the next match),
   then a warm-up of dry runs, then a timed mix: half real allocations of whole nodes (each
   its own environment), half dry runs; the oldest allocation is released whenever more
   than ``--hold`` are active, so the fleet never runs out. Then dry runs alone (whole
   nodes and slices). The database invariants are checked afterwards (as in part 3).
3. ``throughput``: PostgreSQL, ``gpuinv serve --workers 2``, 8 client processes each on one
   keep-alive connection, for a fixed duration, each looping matchDevice (half whole nodes
   via baremetal gpu=8, half vcluster slices of 1/2/4 GPUs) and, sometimes, a release of
   one of its allocations. Reported: allocations/s, claim latency (successful allocating
   matchDevice calls, client side) p50/p99, releases, claims that needed more than one
   attempt (``claimAttempts`` > 1), CONCURRENT_UPDATE and NO_MATCH counts, 5xx. Afterwards
   the database is queried for over-allocation: for every device total - free equals the
   sum of its active allocation_device amounts, no device is in two active exclusive rows
   (or held whole and sliced at once), free is within 0..total; plus bookkeeping checks.
4. ``packing``: the pure engine with a simulated claim (the chosen Candidate's free capacity
   reduced and upserted into the index), no releases, on a seeded stream of 60% whole
   8-GPU nodes (baremetal gpu=8) and 40% 1/2/4-GPU slices (vcluster), against a mixed
   fleet whose devices are all available. Each policy runs until the first NO_MATCH of a
   whole-node request; reported is the share of the fleet's GPUs allocated at that moment.
   Policies: our engine (smallest fit), first-fit (first eligible in hostname order) and a
   seeded random choice among the eligible; eligibility for the latter two is computed
   here the way engine.match filters (index.eligible, the match conditions, free capacity).

Nothing here asserts on timing: figures are printed for a human to judge. Errors, 5xx and
failed invariants are listed as problems, as they make the figures void or show a bug.
Latency percentiles are nearest-rank over the timed requests. The client runs on the
same machine as the server and the database; the report gives CPU count and load.

Run ``python -m bench.matching --help`` for the options; ``--quick`` is a 1k smoke run.

The package, a module a part: ``workload`` (the profile, the fleet as candidates, the
requests), ``engine``, ``http``, ``throughput`` and ``packing`` (parts 1 to 4), ``checks``
(the invariants read from the database), ``report`` and ``__main__`` (the command line).
What other benchmarks share (client, fleet, percentiles, tables, CPU, the server) is in
bench/ beside it.
"""
