"""Provision requests: a seeded day of arrivals replayed against the real service, the
queue (priorities, fair share, preemption) against plain first-come-first-served.

What is measured, and why (issue 17, "Proof": "a day of seeded arrivals (three tenants with
quotas, priorities, mixed sizes, some preemptible) replayed at 100x speed against the real
service: report GPU utilization, queue wait p50/p99 by priority, preemptions, and
per-tenant share vs. quota; compare with plain first-come-first-served")
---------------------------------------------------------------------------------------
The fleet: --servers 8-GPU servers (api/demo.py's H100, H200, B200, MI300X and Gaudi3
shapes), all available, none a tenant's: the shared pool. Three tenants (api/demo.py's
acme-ai, nimbus-labs, orbital-ml) with GPU quotas of --quotas percent of the fleet's GPUs
(40/35/25), each with a partner-admin token, so their requests are approved at once.

The arrivals (seeded, the same in every mode): per tenant a Poisson process whose rate
follows a daily curve, rate x (1 + 0.5 cos(2 pi (hour - peak) / 24)), peaks at 11:00,
15:00 and 19:00, drawn by thinning; the rates are set so that over a whole day the
GPU-hours asked are --load times the fleet's (0.9), split --demand between the tenants
(50/30/20: acme-ai asks for more than its quota, orbital-ml for less). Each arrival asks
for 1, 2, 4 or 8 GPUs (weights 25/20/20/35; 1-4 as vcluster slices with 16 CPUs and
128 GiB a GPU, 8 as a whole baremetal node), has priority 0, 5 or 10 (80/15/5), is
preemptible with a chance of 40% at priority 0, 10% at 5, never at 10, and runs for a
log-normal time (median 2 h, sigma 0.8, capped at 12 h) once fulfilled.

The replay: hours --start to --start + --hours of the day, at --speed (100x: a day in
14.4 min), one `gpuinv serve` on a fresh database (PostgreSQL, or --backend sqlite) with
GPUINV_PREEMPTION_GRACE_SECONDS and GPUINV_QUEUE_BACKFILL_SECONDS scaled by the speed
(--grace-minutes 5 and --backfill-minutes 10 simulated) and GPUINV_QUEUE_POLL_SECONDS
--queue-poll (0.2 s real). Each arrival is a `requestDevices` at its time; a poller reads
the open requests with `provisionRequest(id)` (25 aliases a query) until they are
FULFILLED; each allocation is released (`releaseAllocation`) when its run time is over,
counted from its allocation's createdAt. A preempted job (its allocation seen PREEMPTING,
then PREEMPTED) does what a checkpointing pipeline does: it submits the rest of its work
as a new request (same tenant, size, priority, flag; environment `<name>-rN`), waiting
again. Every time is the service's own (requestedAt, createdAt, releasedAt), converted to
simulated time, so the poll interval does not blur the waits.

The modes, one after the other on fresh databases, on the same arrivals:
- queue: as the tenants, with their quotas, priorities and preemptible flags: the queue's
  order (priority, the tenant's share of its quota, age), backfill, preemption, borrowing.
- fcfs: plain first-come-first-served: the same requests as the platform admin with no
  tenant, priority 0, not preemptible. Without a tenant there is no quota and no fair
  share (every request has the same share), so the queue is served by age alone, with
  the service's backfill window, and never preempts. (Sending the tenants' requests at
  priority 0 with their quotas would not be FCFS: equal priorities go by the tenant's
  share first, and a tenant at its quota could not borrow; that is mode fcfs-quota.)
- fcfs-quota (only if asked, --modes): as queue, every priority 0 and none preemptible.

Reported for each mode, side by side: GPU utilization (GPU-hours held / GPU-hours the
fleet had, over the window and its second half: the fleet starts empty), queue wait
p50/p99 (nearest rank, simulated minutes, fulfilled - submitted) by the arrival's
priority (fcfs sent them all as 0: it shows what priority bought), requests never
fulfilled by the end (and the oldest's wait so far), preemptions (marked, carried out),
per tenant the mean share of the fleet held against its quota share and what it asked;
the client's lag behind the schedule and the API's times (a client that falls behind
makes the figures doubtful). Checks: any API error, a request REJECTED/CANCELLED/EXPIRED,
a non-preemptible allocation preempted, a traceback in the server's log; sampled during
the run, requests that wait although a device has room for them (bench/requests/checks.py
says how that is judged); after the run, bench/claims' over-allocation and quota-counter
invariants (PostgreSQL).

Caveats: the machine has 2 cores shared with others' work, so the service's rounds (and
so the waits, at 100x each real second is 100 simulated) are noisy; the queue worker's
30 s safety round is not scaled. Nothing here asserts on time.

The package: ``workload`` (fleet, tenants, arrivals), ``replay`` (the modes and the
replay's threads), ``checks`` (the database's view), ``report`` (figures and tables) and
``__main__`` (the command line and the runs).
"""
