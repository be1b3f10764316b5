"""One logged-in PKCS#11 session on one token, and the objects the appliance keeps there.

Besides key pairs, the token holds each key's DSC (a CKO_CERTIFICATE linked by CKA_ID) and small
CKO_DATA records (the key's lifecycle state): everything every process and replica must agree on
lives in the HSM, not in a local file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.constants import CertificateType
from pkcs11.exceptions import (
    NoSuchToken,
    PinIncorrect,
    PinLenRange,
    PKCS11Error,
    UserAlreadyLoggedIn,
)

from hsm._errors import HsmError, HsmLoginError, ckr_name
from hsm._faults import injector_for, latency_for
from hsm._keys import (
    BEFORE_SIGN,
    KeyAlgorithm,
    SigningKey,
    check_private_key_attributes,
    generate_keypair,
    public_key_der,
)
from hsm._mechanisms import attribute_mapper
from hsm._softhsm import softhsm_store_of, token_store_lock

_P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")  # DER OID secp256r1

#: The label (and CKA_ID) of the issuance ledger's audit key: it signs ledger checkpoints, never
#: a certificate, so it is no signing key.
AUDIT_LABEL = "hcert-ledger-audit"


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """An X.509 certificate object in the token, linked to its key by CKA_ID."""

    label: str
    key_id: bytes
    der: bytes


@dataclass(frozen=True, slots=True)
class StoredData:
    """A CKO_DATA object: ``application`` names its kind, ``label`` its owner."""

    application: str
    label: str
    value: bytes


class HsmToken:
    """A read/write user session on one token. Use from one thread only (see package docs)."""

    def __init__(self, module_path: str, token_label: str, pin: str) -> None:
        # SoftHSM's token directory, as its C_Initialize reads SOFTHSM2_CONF now (issue 9 §12).
        self._store = softhsm_store_of(module_path)
        try:
            with token_store_lock(self._store, exclusive=False):  # C_Initialize reads the store
                self._lib = pkcs11.lib(module_path)
        except (OSError, RuntimeError, PKCS11Error) as e:
            raise HsmError(f"cannot load PKCS#11 module {module_path!r}: {e}") from e
        self.module_path = module_path
        self.token_label = token_label
        self._pin = pin
        self._session = self._login()
        faults = injector_for(module_path, self.close)
        latency = latency_for(module_path)
        BEFORE_SIGN[:] = [
            hook for hook in (faults.before_sign if faults else None, latency) if hook is not None
        ]

    def _login(self) -> pkcs11.Session:
        with token_store_lock(self._store, exclusive=True):  # C_Login writes the store
            return self._open_logged_in()

    def _open_logged_in(self) -> pkcs11.Session:
        token = self._find_token_unlocked()
        try:
            return token.open(rw=True, user_pin=self._pin, attribute_mapper=attribute_mapper())
        except UserAlreadyLoggedIn:
            # PKCS#11 logs in an application, not a session: a second session of this process
            # (a CLI step inside a test) shares the login.
            return token.open(rw=True, attribute_mapper=attribute_mapper())
        except (PinIncorrect, PinLenRange) as e:
            code = ckr_name(e)
            raise HsmLoginError(
                f"token {self.token_label!r} refused the user PIN ({code})", code
            ) from e
        except PKCS11Error as e:
            raise HsmError.of(f"cannot log in to token {self.token_label!r}", e) from e

    def _find_token(self) -> pkcs11.Token:
        with token_store_lock(self._store, exclusive=False):
            return self._find_token_unlocked()

    def _find_token_unlocked(self) -> pkcs11.Token:
        try:
            return self._lib.get_token(token_label=self.token_label)
        except NoSuchToken as e:
            raise HsmLoginError(
                f"no token labelled {self.token_label!r} in {self.module_path}", "NO_SUCH_TOKEN"
            ) from e
        except PKCS11Error as e:
            raise HsmError.of(f"cannot list tokens of {self.module_path}", e) from e

    def check(self) -> None:
        """Raise :class:`HsmError` unless the token is still there (C_GetSlotList and
        C_GetTokenInfo). An object search on a token whose storage went away can answer "no
        objects" without an error (SoftHSM does), which must not read as "no keys"."""
        self._find_token()

    def reopen(self) -> None:
        """A new session on the same login (issue 9 §3): after CKR_SESSION_HANDLE_INVALID or
        CKR_OBJECT_HANDLE_INVALID every cached key handle is stale; callers find keys again."""
        self.close()
        self._session = self._login()

    def close(self) -> None:
        with contextlib.suppress(PKCS11Error):
            self._session.close()

    def finalize(self) -> None:
        """Close the session and finalise the library (C_Finalize): the process keeps no
        state of a device that went away (issue 9 §4)."""
        self.close()
        with contextlib.suppress(PKCS11Error):
            self._lib.finalize()

    # -- keys --------------------------------------------------------------------------------

    def signing_keys(self) -> list[SigningKey]:
        """Every private key in the token that HCERT can use (P-256 EC, RSA-2048+), except the
        ledger's audit key."""
        keys: list[SigningKey] = []
        for obj in self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
            with _unless_gone():
                algorithm = _algorithm_of(obj)
                label = str(obj[Attribute.LABEL])
                if algorithm is not None and label != AUDIT_LABEL:
                    keys.append(SigningKey(label, bytes(obj[Attribute.ID]), algorithm, obj))  # type: ignore[arg-type]
        return keys

    def generate_key(self, algorithm: KeyAlgorithm, label: str, key_id: bytes) -> SigningKey:
        if any(True for _ in self._objects({Attribute.LABEL: label})):
            raise HsmError(f"the token already holds an object labelled {label!r}")
        try:
            _, private = generate_keypair(self._session, algorithm, label, key_id)
        except HsmError:
            # A pair half made (e.g. the token filled up between the two objects) is removed,
            # so a failed generation leaves the token as it was.
            with contextlib.suppress(HsmError):
                self.destroy_key_objects(key_id)
            raise
        return SigningKey(label=label, key_id=key_id, algorithm=algorithm, handle=private)

    def audit_key(self, *, create: bool) -> tuple[SigningKey, bytes] | None:
        """The ledger's audit key and its public key (SPKI DER): a P-256 key made in the token
        with the same sign-only, never-extractable template as a DSC key. With ``create`` it is
        generated when missing. Should two replicas have made one at once, every process picks
        the same one: the lowest public key."""
        found = []
        for obj in self._objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: AUDIT_LABEL}
        ):
            with _unless_gone():
                key_id = bytes(obj[Attribute.ID])
                key = SigningKey(AUDIT_LABEL, key_id, KeyAlgorithm.EC_P256, obj)  # type: ignore[arg-type]
                found.append((self.public_key_der(key_id), key))
        if not found and create:
            key_id = AUDIT_LABEL.encode() + os.urandom(4)
            _, private = generate_keypair(self._session, KeyAlgorithm.EC_P256, AUDIT_LABEL, key_id)
            key = SigningKey(AUDIT_LABEL, key_id, KeyAlgorithm.EC_P256, private)
            found.append((self.public_key_der(key_id), key))
        if not found:
            return None
        public, key = min(found, key=lambda pair: pair[0])
        # An audit key made before the mechanism restriction keeps signing checkpoints: refusing
        # it would stop all issuance, and it signs nothing but ledger heads.
        check_private_key_attributes(key.handle, KeyAlgorithm.EC_P256, allow_unrestricted=True)
        return key, public

    def find_key(self, label: str) -> SigningKey | None:
        """The HCERT-usable private key with this label, or None."""
        return next((k for k in self.signing_keys() if k.label == label), None)

    def destroy_key_objects(self, key_id: bytes) -> int:
        """Destroy the private key, public key and certificates with this CKA_ID; the count."""
        destroyed = 0
        for object_class in (
            ObjectClass.PRIVATE_KEY,
            ObjectClass.PUBLIC_KEY,
            ObjectClass.CERTIFICATE,
        ):
            for obj in self._objects({Attribute.CLASS: object_class, Attribute.ID: key_id}):
                try:
                    obj.destroy()
                except PKCS11Error as e:
                    raise HsmError(f"cannot destroy {object_class.name}: {e}") from e
                destroyed += 1
        return destroyed

    def public_key_der(self, key_id: bytes) -> bytes:
        """The DER public key of the pair with this CKA_ID (SPKI for EC, PKCS#1 for RSA)."""
        for obj in self._objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id}):
            return public_key_der(obj)  # type: ignore[arg-type]
        raise HsmError(f"no public key with id {key_id.hex()} in the token")

    # -- certificates and data records -----------------------------------------------------------

    def certificates(self) -> list[StoredCertificate]:
        found: list[StoredCertificate] = []
        for obj in self._objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            with _unless_gone():
                found.append(
                    StoredCertificate(
                        label=str(obj[Attribute.LABEL]),
                        key_id=bytes(obj[Attribute.ID]),
                        der=bytes(obj[Attribute.VALUE]),
                    )
                )
        return found

    def store_certificate(self, label: str, key_id: bytes, der: bytes, subject_der: bytes) -> None:
        self._create(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: label,
                Attribute.ID: key_id,
                Attribute.SUBJECT: subject_der,
                Attribute.VALUE: der,
            }
        )

    def delete_certificates(self, key_id: bytes) -> int:
        """Destroy the certificates linked to this CKA_ID (before a replacement is stored)."""
        found = self._objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: key_id})
        for obj in found:
            try:
                obj.destroy()
            except PKCS11Error as e:
                raise HsmError(f"cannot destroy certificate: {e}") from e
        return len(found)

    def data_objects(self, application: str, label: str | None = None) -> list[StoredData]:
        """The data records of ``application``; with ``label``, the token's search finds that
        record alone (one object read, not every record of the application)."""
        query: dict[Attribute, Any] = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: application,
        }
        if label is not None:
            query[Attribute.LABEL] = label
        found: list[StoredData] = []
        for obj in self._objects(query):
            with _unless_gone():
                label, value = str(obj[Attribute.LABEL]), bytes(obj[Attribute.VALUE])
                found.append(StoredData(application, label, value))
        return found

    def put_data(self, application: str, label: str, value: bytes) -> None:
        """Create or replace the data record (application, label).

        The new record is created before the old one is destroyed: a reader in another process
        sees the old record, both, or the new one — never none, which for a key-state record
        would take an active key out of service for one refresh (issue 4: rotation with zero
        failed items)."""
        query = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: application,
            Attribute.LABEL: label,
        }
        previous = self._objects(query)
        self._create(
            {**query, Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.VALUE: value}
        )
        for obj in previous:
            try:
                obj.destroy()
            except PKCS11Error as e:
                raise HsmError(f"cannot replace data record {label!r}: {e}") from e

    def delete_data(self, application: str, label: str) -> bool:
        """Destroy the data record (application, label); False when there was none."""
        query = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.APPLICATION: application,
            Attribute.LABEL: label,
        }
        found = False
        for obj in self._objects(query):
            try:
                obj.destroy()
            except PKCS11Error as e:
                raise HsmError(f"cannot delete data record {label!r}: {e}") from e
            found = True
        return found

    # -- plumbing ------------------------------------------------------------------------------

    def _objects(self, query: dict[Attribute, Any]) -> list[pkcs11.Object]:
        try:
            return list(self._session.get_objects(query))
        except PKCS11Error as e:
            raise HsmError.of("object search failed", e) from e

    def _create(self, attrs: dict[Attribute, Any]) -> None:
        try:
            self._session.create_object(attrs)
        except PKCS11Error as e:
            raise HsmError.of("cannot create object in the token", e) from e


_GONE = frozenset({"CKR_OBJECT_HANDLE_INVALID", "CKR_KEY_HANDLE_INVALID"})


@contextlib.contextmanager
def _unless_gone() -> Iterator[None]:
    """Skip one object of a listing that another process deleted or left malformed while we
    read it (issue 9 §5: CKR_OBJECT_HANDLE_INVALID escaped here and crashed workers); any
    other failure is the session's or the device's and is raised."""
    try:
        yield
    except PKCS11Error as e:
        error = HsmError.of("reading an object failed", e)
        if error.scope != "operation" and error.code not in _GONE:
            raise error from e


def _algorithm_of(key: pkcs11.Object) -> KeyAlgorithm | None:
    try:
        key_type = key[Attribute.KEY_TYPE]
        if key_type == KeyType.EC:
            return KeyAlgorithm.EC_P256 if bytes(key[Attribute.EC_PARAMS]) == _P256_PARAMS else None
        if key_type == KeyType.RSA:
            return KeyAlgorithm.RSA_2048 if len(key[Attribute.MODULUS]) * 8 >= 2048 else None
    except PKCS11Error as e:
        if HsmError.of("reading a key", e).scope == "operation":
            return None  # an attribute this key does not have: not a key HCERT can use
        raise
    return None
