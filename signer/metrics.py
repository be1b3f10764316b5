"""Prometheus metrics, correct across worker processes.

The front process and the workers write to prometheus_client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by the front before it imports this module or starts a worker);
the front serves ``/metrics`` by merging them.
Counters are bumped once per batch, not per item, to keep the hot path free of metric writes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ITEMS = Counter(
    "hcert_items_total",
    "Batch items processed, by outcome (signed / valid for validate_only / rejected).",
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
    "Time a worker spends on one chunk of a batch (validation, signing, encoding).",
    buckets=_BUCKETS,
)
REFUSALS = Counter(
    "hcert_refusals_total",
    "Calls refused by the front, by reason (permission, quota reasons, draining, no_worker).",
    ["reason"],
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
DSC_NOT_AFTER = Gauge(
    "hcert_dsc_not_after_seconds",
    "DSC notAfter, seconds since the epoch, by kid.",
    ["kid", "label"],
    multiprocess_mode="livemax",
)
KEY_USAGE_END = Gauge(
    "hcert_key_usage_end_seconds",
    "End of the DSC private key's usage period, seconds since the epoch, by kid: the DSC's "
    "PrivateKeyUsagePeriod notAfter, else activation + [issuer] key_usage_days.",
    ["kid", "label"],
    multiprocess_mode="livemax",
)
