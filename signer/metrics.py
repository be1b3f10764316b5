"""Prometheus metrics, correct across worker processes.

The front process and the workers write to prometheus_client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by the front before it imports this module or starts a worker);
the front serves ``/metrics`` by merging them.
Counters are bumped once per batch or chunk, not per item, to keep the hot path free of metric
writes. What the front reads from its own state at scrape time (HSM sessions, every process's
CPU and memory, build info) is :mod:`signer.front.scrape`'s collector, not a file here.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ITEMS = Counter(
    "hcert_items_total",
    "Batch items processed, by outcome: signed, valid (validate_only) or rejected as the "
    "workers answered them; withheld: signed, then refused by the front (a UVCI repeated "
    "across chunks, Reissue of what this appliance did not issue or was revoked) and never "
    "handed out. Handed out = signed - withheld.",
    ["outcome"],
)
ITEM_ERRORS = Counter(
    "hcert_item_errors_total", "Item errors (an item may carry several), by code.", ["code"]
)
BATCHES = Counter("hcert_batches_total", "Batches processed, by RPC.", ["rpc"])
_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SECONDS = Histogram(
    "hcert_batch_seconds",
    "Time from a request's arrival at the front to its response (queueing included), by RPC.",
    ["rpc"],
    buckets=_BUCKETS,
)
CHUNK_SECONDS = Histogram(
    "hcert_chunk_seconds",
    "Time a worker spends on one chunk of a batch (validation, HSM signing, encoding): the "
    "HSM side of a chunk, queueing left out (hcert_chunk_queue_seconds).",
    buckets=_BUCKETS,
)
CHUNK_QUEUE_SECONDS = Histogram(
    "hcert_chunk_queue_seconds",
    "Time a chunk waits from its batch's admission until a worker starts on it (the front's "
    "queue and the worker's one waiting slot).",
    buckets=_BUCKETS,
)
BATCH_ITEMS = Histogram(
    "hcert_batch_items",
    "Items per batch received (parsed, refused or not), by RPC.",
    ["rpc"],
    buckets=(1, 4, 16, 64, 128, 256, 512, 1000, 2500, 5000, 10_000, 100_000),
)
CLIENT_ITEMS = Counter(
    "hcert_client_items_total",
    "Items of the batches admitted, by client: the policy's client names, 'other' for every "
    "client it does not name.",
    ["client"],
)
CLIENT_REFUSALS = Counter(
    "hcert_client_refusals_total",
    "Calls refused by the front, by client (the policy's names or 'other') and reason; the "
    "quota rejections are the reasons over_burst, rate, daily, client_in_flight, "
    "total_in_flight and deadline.",
    ["client", "reason"],
)
LEDGER_WRITE_SECONDS = Histogram(
    "hcert_ledger_write_seconds",
    "Time of one ledger commit (the records of one or more batches), failed ones included.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
#: go-grpc-prometheus / py-grpc-prometheus names and labels; the front counts every RPC.
_GRPC = ["grpc_type", "grpc_service", "grpc_method"]
GRPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _GRPC)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code (refusals and health checks included).",
    [*_GRPC, "grpc_code"],
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from an RPC's start to its status, by method and status code.",
    [*_GRPC, "grpc_code"],
    buckets=(0.0005, *_BUCKETS, 30.0, 60.0),
)
REFUSALS = Counter(
    "hcert_refusals_total",
    "Calls refused by the front, by reason (permission, quota reasons, deadline, malformed, "
    "over_max_batch, draining, no_worker, ledger).",
    ["reason"],
)
REFUSAL_SECONDS = Histogram(
    "hcert_refusal_seconds",
    "From a call's handler starting to its RESOURCE_EXHAUSTED (quotas, in flight, deadline).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CHUNKS_DROPPED = Counter(
    "hcert_chunks_dropped_total",
    "Chunks never sent to a worker because their caller had gone (cancelled, deadline passed).",
)
DISCARDED = Counter(
    "hcert_discarded_signatures_total",
    "Items signed for a caller that had gone by the time they were done: never handed out, "
    "never recorded in the ledger.",
)
WORKER_RESTARTS = Counter("hcert_worker_restarts_total", "Signing worker processes restarted.")
LOST_CHUNKS = Counter(
    "hcert_worker_lost_chunks_total",
    "Chunks in flight on a signing worker that died (issue 9 §6): retried once on another worker "
    "(outcome retried) or, already retried or while stopping, answered UNAVAILABLE.",
    ["outcome"],
)
LEDGER_RECORDS = Counter("hcert_ledger_records_total", "Issuance records committed to the ledger.")
LEDGER_FAILURES = Counter(
    "hcert_ledger_write_failures_total",
    "Ledger commits that failed; their batches were answered UNAVAILABLE.",
)
LEDGER_CHECKPOINTS = Counter(
    "hcert_ledger_checkpoints_total", "Ledger heads signed by the HSM's audit key and stored."
)
LEDGER_CHECKPOINT_FAILURES = Counter(
    "hcert_ledger_checkpoint_failures_total",
    "Ledger checkpoints that failed (HSM, storage, or a head that moved).",
)
KEY_STATE_REPLAYS = Counter(
    "hcert_key_state_replays_total",
    "Key-state records refused because their version is below the ledger's highest accepted "
    "version for the key (a replayed older record).",
)
SIGNATURES = Counter("hcert_signatures_total", "Signatures made in the HSM, by kid.", ["kid"])
HSM_ERRORS = Counter(
    "hcert_hsm_errors_total",
    "HSM operations that failed, by PKCS#11 return value (CKR_… name; NO_SUCH_TOKEN, "
    "CKR_UNMAPPED or NONE for failures without one).",
    ["code"],
)
HSM_UP = Gauge(
    "hcert_hsm_up",
    "1 while a signing worker is logged in to the HSM, 0 while none is (the alert: HSM "
    "unreachable, PIN refused, token missing).",
    multiprocess_mode="livemax",
)
HSM_RECONNECTS = Counter(
    "hcert_hsm_reconnects_total",
    "Times the appliance logged in again after losing the HSM (one per outage and worker).",
)
HSM_LOGIN_ATTEMPTS = Counter(
    "hcert_hsm_login_attempts_total",
    "Login attempts while the HSM is in trouble (one per backoff window), by outcome.",
    ["outcome"],
)
KEYS_MISSING = Gauge(
    "hcert_keys_missing",
    "Keys the officers' approved records say are active whose private key or DSC is not in "
    "the token (deleted, or the token was re-initialised): they do not sign.",
    multiprocess_mode="livemax",
)
WORKER_READY = Gauge(
    "hcert_worker_ready",
    "1 while a worker is logged in and has an active key with a valid DSC.",
    ["pid"],
    multiprocess_mode="liveall",
)
KEY_STATE = Gauge(
    "hcert_key_state",
    "1 for the key's current state (pending / active / retired), by kid and label.",
    ["kid", "label", "state"],
    multiprocess_mode="livemax",
)
ACTIVE_KEYS = Gauge(
    "hcert_active_keys",
    "Active keys whose DSC is valid now and allows the certificate type, by type (0: that type "
    "cannot be signed).",
    ["type"],
    multiprocess_mode="livemax",
)
DSC_NOT_AFTER = Gauge(
    "hcert_dsc_not_after_timestamp_seconds",
    "DSC notAfter, seconds since the epoch, by kid.",
    ["kid", "label"],
    multiprocess_mode="livemax",
)
KEY_USAGE_END = Gauge(
    "hcert_key_usage_end_timestamp_seconds",
    "End of the DSC private key's usage period, seconds since the epoch, by kid: the DSC's "
    "PrivateKeyUsagePeriod notAfter, else activation + [issuer] key_usage_days.",
    ["kid", "label"],
    multiprocess_mode="livemax",
)
