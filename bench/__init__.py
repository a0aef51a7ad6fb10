"""Benchmarks, each run as ``python -m bench.<name>``: inventory, matching, sync, terraform,
ops, liveness, claims (the big ones are packages: a module a part, ``__main__`` the
command line).

What more than one of them needs is written once, here, so that their figures are taken
the same way and a fix reaches all: ``service`` (a fresh database, ``gpuinv``, the server
process), ``graphql`` (the client, request bodies, the import, warming workers),
``socket_client`` (a lighter client with the same ``send``), ``fleet`` (the seeded
fleets), ``stats`` (nearest-rank percentiles), ``cpu`` (who used the CPU), ``report``
(progress, problems, the table, the end of a run) and ``options`` (common arguments).
"""
