"""The live view of the keys in the HSM: which DSCs exist, which keys may sign, and which one
signs a given certificate.

Built and refreshed inside the worker's HSM thread. A key signs only when it has a DSC in the
token issued by a configured CSCA (``[issuer] csca``, issue 8), an ``active`` state record whose
time has come, sign-only / sensitive / never-extractable attributes restricted to the signing
mechanism, and it passed a self-test: a signature made in the HSM that verifies with the DSC's
public key (catches a key/certificate mix-up before any certificate is issued).

Dual control (issue 4 §3, ADR 0005): with an :class:`ApprovalPolicy` (the server always passes
one) a state record counts only when ``required_approvals`` distinct roster officers signed its
exact content, and a DSC is listed only when such a record names its SHA-256 and the key's
CKA_ID. A record written straight into the token by one PIN holder is ignored, and so is an
approved record older than one this process has already seen for the key (a replayed record).

Several keys active for one certificate type: the requested algorithm wins (ES256 when none is
requested), then the most recently activated key whose DSC covers the certificate's whole
validity [iat, exp] (GOV §2.3: never sign documents that outlive the DSC).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from hsm import HsmError, HsmToken, KeyAlgorithm, SigningKey, StoredCertificate, WeakKeyError
from signer.domain import Alg, CertType
from signer.errors import BackendError
from signer.hcert.encode import HcertEncoder
from signer.hcert.verify import TrustedDsc, TrustStore
from signer.keys.certcheck import chain_problems
from signer.keys.counting import StoredRecord, VersionGuard, records_that_count
from signer.keys.dsc import DscFacts
from signer.keys.officers import ApprovalPolicy
from signer.keys.selftest import self_test
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord

log = logging.getLogger(__name__)

_KEY_ALGS = {KeyAlgorithm.EC_P256: Alg.ES256, KeyAlgorithm.RSA_2048: Alg.PS256}
DEFAULT_KEY_USAGE_DAYS = 183  # GOV §3.2: DSC private-key usage about 6 months


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One DSC in the token and the state of its key (a trust-list row)."""

    label: str
    dsc: DscFacts
    state: KeyState
    since: int
    problem: str | None = None  # why an active key cannot sign (weak attributes, self-test)
    usage_end: int | None = None  # end of private-key usage (PrivateKeyUsagePeriod or policy)


@dataclass(frozen=True, slots=True)
class ActiveKey:
    entry: KeyEntry
    encoder: HcertEncoder
    sign_digest: Callable[[bytes], bytes]  # the HSM call the encoder uses (hash-only signing)

    def covers(self, iat: int, exp: int) -> bool:
        return self.entry.dsc.not_before <= iat and exp <= self.entry.dsc.not_after


class NoKey(Exception):  # noqa: N818 - a selection outcome, not a fault
    """No active key can sign this certificate; ``code`` and message go into the item error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeyRegistry:
    """The keys of one token, as dual control allows them: every reader (server, benchmark,
    tools) passes the configured approval policy, so there is no path that skips the check."""

    def __init__(
        self,
        token: HsmToken,
        approvals: ApprovalPolicy,
        cscas: Sequence[x509.Certificate],
        key_usage_days: int = DEFAULT_KEY_USAGE_DAYS,
        guard: VersionGuard | None = None,
    ) -> None:
        self._token = token
        self._guard = guard
        self._floors: Mapping[bytes, int] | None = None if guard is not None else {}
        self._approvals = approvals
        self._cscas = tuple(cscas)
        self._chain: dict[bytes, list[str]] = {}  # DSC DER → why it does not chain (cached)
        self._key_usage_seconds = key_usage_days * 86400
        self._verified: dict[
            tuple[bytes, bytes], ActiveKey
        ] = {}  # (key id, kid) → passed self-test
        self._newest: dict[str, int] = {}  # label → newest approved issued_at seen (anti-replay)
        self._warned: set[tuple[str, str]] = set()
        self.entries: tuple[KeyEntry, ...] = ()
        #: Labels of keys an approved record says are active but whose private key or DSC is
        #: not in the token (issue 9 §5): reported, never replaced by another key.
        self.missing: tuple[str, ...] = ()
        #: Our DSCs in every state, for verifying what we signed (retired keys included).
        self.trust = TrustStore(())
        self._active: tuple[ActiveKey, ...] = ()

    def refresh(self, now: float) -> None:
        """Re-read keys, DSCs and state records from the token (cheap when nothing changed)."""
        keys = {k.key_id: k for k in self._token.signing_keys()}
        states = self._records()
        certificates = self._token.certificates()
        # A token whose storage went away can list no objects without an error (SoftHSM
        # does): only a token that is still there after the listing makes it a listing.
        self._token.check()
        self.missing = self._missing(states, keys, certificates, now)
        entries: list[KeyEntry] = []
        active: list[ActiveKey] = []
        for stored in certificates:
            key = keys.get(stored.key_id)
            if key is None:
                continue  # a CA or foreign certificate, not a DSC of ours
            try:
                dsc = DscFacts.from_der(stored.der)
            except ValueError as e:
                self._warn_once(stored.label, f"ignoring certificate: {e}")
                continue
            record = states.get(key.label)
            if not self._covers(record, key, stored.der) or not self._chains(key, dsc):
                continue
            state = record.effective(now) if record is not None else KeyState.PENDING
            since = record.since(now) if record is not None else 0
            usage_end = _usage_end(dsc.certificate, record, self._key_usage_seconds)
            entry = KeyEntry(key.label, dsc, state, since, usage_end=usage_end)
            if state is KeyState.ACTIVE:
                try:
                    active.append(self._verify(key, entry))
                except (WeakKeyError, HsmError, ValueError) as e:
                    if isinstance(e, HsmError) and e.scope != "operation":
                        raise  # the session or the device failed, not this key (issue 9 §4)
                    entry = KeyEntry(key.label, dsc, state, since, str(e), usage_end)
                    self._warn_once(key.label, f"key is active but cannot sign: {e}")
            entries.append(entry)
        self.entries = tuple(entries)
        self.trust = TrustStore(TrustedDsc(e.dsc.certificate, e.dsc.kid) for e in self.entries)
        # Most recently activated first; ties broken by the newer DSC.
        self._active = tuple(
            sorted(active, key=lambda a: (a.entry.since, a.entry.dsc.not_before), reverse=True)
        )

    def forget_handles(self) -> None:
        """After the session was reopened: every cached key handle belongs to the old one."""
        self._verified.clear()

    def _missing(
        self,
        states: dict[str, KeyStateRecord],
        keys: dict[bytes, SigningKey],
        certificates: Sequence[StoredCertificate],
        now: float,
    ) -> tuple[str, ...]:
        with_dsc = {c.key_id for c in certificates}
        missing = tuple(
            sorted(
                label
                for label, record in states.items()
                if record.effective(now) is KeyState.ACTIVE
                and (record.key_id not in keys or record.key_id not in with_dsc)
            )
        )
        for label in missing:
            self._warn_once(
                label,
                "approved as active, but its private key or DSC is not in the token (deleted, "
                "or the token re-initialised): it does not sign until officers act",
            )
        return missing

    def _records(self) -> dict[str, KeyStateRecord]:
        """label → the record that counts (:func:`records_that_count`, as ``signer keys``)."""
        stored = (
            StoredRecord(d.label, d.value) for d in self._token.data_objects(STATE_APPLICATION)
        )
        floors = self._read_floors()
        if floors is None:
            return {}
        found = records_that_count(stored, self._approvals, self._newest, floors)
        for ignored in found.ignored:
            self._warn_once(ignored.label, ignored.reason)
            if ignored.replay is not None and self._guard is not None:
                self._guard.replayed(ignored.replay, floors.get(ignored.replay.key_id, 0))
        if self._guard is not None:
            self._guard.accepted(found.counted.values(), floors)
        for label, issued_at in found.newest_seen().items():
            self._newest[label] = max(self._newest.get(label, 0), issued_at)
        return dict(found.counted)

    def _read_floors(self) -> Mapping[bytes, int] | None:
        """The ledger's version floors: the last ones read when the ledger is unreachable, and
        None (no key counts: fail closed) until they have been read once."""
        if self._guard is None:
            return self._floors
        try:
            self._floors = self._guard.floors()
        except BackendError as e:
            self._warn_once(
                "*", f"cannot read the key-state version floors from the ledger yet: {e}"
            )
        return self._floors

    def _covers(self, record: KeyStateRecord | None, key: SigningKey, der: bytes) -> bool:
        """Under dual control, a DSC counts only when an approved record names it and the key."""
        if record is None or record.certificate_sha256 is None:
            self._warn_once(key.label, "DSC not listed: no approved import names it")
            return False
        if record.key_id != key.key_id or record.certificate_sha256 != hashlib.sha256(der).digest():
            self._warn_once(key.label, "DSC not listed: the approved record names another key/DSC")
            return False
        return True

    def _chains(self, key: SigningKey, dsc: DscFacts) -> bool:
        """A DSC counts only when a configured CSCA issued it (issue 8): one a PIN holder, or
        officers misled by another CA, put into the token is never served."""
        problems = self._chain.get(dsc.der)
        if problems is None:
            problems = self._chain[dsc.der] = chain_problems(dsc.certificate, self._cscas)
        if problems:
            self._warn_once(
                key.label,
                "DSC not listed: it does not chain to a configured CSCA: " + "; ".join(problems),
            )
        return not problems

    def _warn_once(self, label: str, message: str) -> None:
        if (label, message) not in self._warned:
            self._warned.add((label, message))
            log.error("key %r: %s", label, message)

    def _verify(self, key: SigningKey, entry: KeyEntry) -> ActiveKey:
        cached = self._verified.get((key.key_id, entry.dsc.kid))
        if cached is not None:
            return ActiveKey(entry, cached.encoder, cached.sign_digest)
        # A key active before keys were restricted to one mechanism keeps signing, with a
        # logged warning (README "Key management"); activation refuses such a key.
        for warning in self_test(key, entry.dsc, allow_unrestricted=True):
            self._warn_once(key.label, f"active key: {warning}")
        ready = ActiveKey(
            entry, HcertEncoder(entry.dsc.alg, entry.dsc.kid, key.sign_digest), key.sign_digest
        )
        self._verified[(key.key_id, entry.dsc.kid)] = ready
        return ready

    def serving(self, now: float) -> bool:
        """True when at least one active key has a DSC valid right now."""
        return any(a.entry.dsc.not_before <= now <= a.entry.dsc.not_after for a in self._active)

    def active_by_kid(self, kid: bytes, now: float) -> ActiveKey | None:
        """The active key with this kid whose DSC is valid at ``now`` (hash-only signing)."""
        for active in self._active:
            dsc = active.entry.dsc
            if dsc.kid == kid and dsc.not_before <= now <= dsc.not_after:
                return active
        return None

    def outside_key_period(
        self, certificate: x509.Certificate | None, iat: int | None
    ) -> str | None:
        """Why a certificate our DSC ``certificate`` verified cannot have been signed at ``iat``
        by this appliance (issue 8 §6: Reissue), or None: ``iat`` before the DSC's notBefore,
        after its notAfter, or at or after the key's retirement."""
        entry = next((e for e in self.entries if certificate == e.dsc.certificate), None)
        if entry is None:
            return "its DSC is no longer in the token"
        if iat is None:
            return "it carries no iat, so when it was signed is unknown"
        dsc = entry.dsc
        if not dsc.not_before <= iat <= dsc.not_after:
            return (
                f"its iat {_iso(iat)} lies outside its DSC's validity (kid {dsc.kid.hex()}, "
                f"{_iso(dsc.not_before)} to {_iso(dsc.not_after)})"
            )
        if entry.state is KeyState.RETIRED and iat >= entry.since:
            return (
                f"its iat {_iso(iat)} lies after its key {entry.label!r} (kid {dsc.kid.hex()}) "
                f"was retired at {_iso(entry.since)}"
            )
        return None

    def select(self, cert_type: CertType, alg: Alg | None, iat: int, exp: int) -> ActiveKey:
        """The key that signs a certificate of ``cert_type`` valid over [iat, exp]."""
        wanted = alg or Alg.ES256
        typed = [a for a in self._active if cert_type in a.entry.dsc.types]
        if alg is None and not any(a.entry.dsc.alg is wanted for a in typed):
            wanted = Alg.PS256
        candidates = [a for a in typed if a.entry.dsc.alg is wanted]
        for candidate in candidates:
            if candidate.covers(iat, exp):
                return candidate
        if not candidates:
            raise NoKey(
                "no_key", f"no active {wanted.value} key may sign {cert_type.value} certificates"
            )
        best = candidates[0].entry.dsc
        if best.not_before > iat:
            raise NoKey(
                "dsc_not_yet_valid",
                f"the active DSC (kid {best.kid.hex()}) is valid only from "
                f"{_iso(best.not_before)}; it cannot sign at {_iso(iat)}",
            )
        raise NoKey(
            "dsc_validity",
            f"the certificate would expire at {_iso(exp)}, after the active DSC "
            f"(kid {best.kid.hex()}) expires at {_iso(best.not_after)}; a security officer must "
            "activate a key with a longer-lived DSC",
        )


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage_end(
    certificate: x509.Certificate, record: KeyStateRecord | None, usage_seconds: int
) -> int | None:
    """The DSC's PrivateKeyUsagePeriod notAfter when present (HCERT.md §7: optional), else
    activation + ``[issuer] key_usage_days``; None for a key never activated."""
    try:
        period = certificate.extensions.get_extension_for_class(x509.PrivateKeyUsagePeriod).value
    except x509.ExtensionNotFound:
        period = None
    if period is not None and period.not_after is not None:
        return int(period.not_after.timestamp())
    if record is not None and record.active_from is not None:
        return record.active_from + usage_seconds
    return None
