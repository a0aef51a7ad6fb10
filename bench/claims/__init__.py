"""Claim-replay benchmark: a seeded list of claims replayed against real servers on PostgreSQL.

What is measured, and why (the issue: "A replay (1,000 GPU servers of several SKUs and
sites; 500 claims, about 60% whole 8-GPU nodes and 40% 1/2/4-GPU slices, filtered on
model, vendor and any-of locations; each claim its own HTTP request), 2 processes,
8 clients, PostgreSQL")
----------------------------------------------------------------------------------------
Each run starts from nothing: a fresh PostgreSQL database; the fleet loaded with
``gpuinv import`` (``--nodes`` servers built by bench/fleet.py's ``fleet_documents``,
itself api/demo.py's ``server_document`` and SHAPES: 8-GPU H100, H200, B200, MI300X and
Gaudi3 servers and 4-GPU L40S, five sites in three ``tags.location`` regions, about 12%
not available); a platform-admin token (``gpuinv token create``); two profiles saved
with ``gpuinv profile save`` (the same filters, ``baremetal`` for whole nodes and
``vcluster`` for slices); then ``gpuinv serve --workers N``.

The claims: ``--claims`` matchDevice requests (seeded, the same list in every run), each
with its own ``environment``: about 60% whole 8-GPU nodes (baremetal, ``gpu=8``) and
40% vcluster slices of 1, 2 or 4 GPUs (``gpu``, ``cpu`` = 16 a GPU, ``memoryMB`` = 128 GiB
a GPU). Every claim names a GPU type (``gputype``: ``tags.gputype``), its vendor
(``vendor``: ``gpus.vendorCode``) and one to three regions (``zone``: a list, any of
which ``tags.location`` may be). ``--clients`` threads in this process, each with its own
keep-alive connection, take the next claim from the list and send it, as fast as they
go, until the list is done. Their HTTP client is httpx, as a Python pipeline's would be;
``--client socket`` (or ``both``, interleaved run by run) uses bench/socket_client.py
instead, a wrk-like client that costs the shared cores about a sixth as much, so the
figures show more of what the server itself can do. Before that: dry runs on fresh
connections until every worker answers fast (its index loaded), then two dry runs on
each client's connection.

Reported per run: claims/s (claims answered / wall time from the first send to the last
answer), latency p50/p95/p99 over every claim's request (sent to answer fully read,
whatever the outcome; nearest rank), outcomes (allocated, NO_MATCH, errors by code),
and CPU per claim, in ms: the server (utime + stime from /proc of ``gpuinv serve`` and
its workers, its process group), PostgreSQL (every ``postgres`` process, as if the
machine were dedicated; in brackets only our database's backends and the background
processes, for a machine that is not; a process that exits during the run loses its
share) and this client process (getrusage). ``other cores`` is the machine's busy CPU
(/proc/stat) not accounted for by the server, our PostgreSQL and the client, in cores on
average: more than a few tenths means someone else's load shared the cores and the
figures are doubtful (such runs are listed as problems). So before each replay the
benchmark waits, up to ``--wait-quiet`` seconds, for the machine to be quiet.

After each run the database itself is checked (psycopg, not the API): no device has
more GPUs, CPUs or memory allocated than it has; every device's free amounts equal its
total minus its active allocations' amounts and lie within 0..total; no device is held
whole by two active allocations, or held whole and sliced at once; every active
allocation has active devices and no released one does; the active allocations are as
many as the claims answered "allocated". The report says ``over-allocation: 0`` or
lists the offending rows.

``--code-dir DIR`` runs the servers and the ``gpuinv`` commands from another checkout
(``python -m api.cli`` with cwd and PYTHONPATH = DIR), e.g. a ``git worktree`` of an
older commit, for a "before" figure while the working tree changes.

Nothing here asserts on timing. Run ``python -m bench.claims --help`` for the options.

The package: ``workload`` (the profiles and the claims), ``code`` (the checkout under
test, its fleet, profiles and token), ``replay`` (the clients and the CPU around them),
``checks`` (the database afterwards), ``report`` and ``__main__`` (the command line and
the runs). The client, fleet, percentiles, table, CPU sampler and server runner are
bench/'s, shared with the other benchmarks.
"""
