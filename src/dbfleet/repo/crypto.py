"""Keys and authenticated encryption; the only module that touches key material.

- The master key is random: 32 bytes for AES-256-GCM, 32 bytes for the keyed
  BLAKE3 that names chunks (equal plaintext gives equal ids inside one
  repository only).
- Each passphrase derives a key-encryption key with scrypt; the key file under
  ``keys/`` holds the master key wrapped by it, so passphrases can be added,
  changed and removed without re-encrypting data.
- Every encrypted object is ``nonce (12) || ciphertext || tag (16)``, with a
  fresh random nonce and associated data that binds it to its purpose (a blob
  to its id), so swapping two stored objects is detected.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from dbfleet.errors import IntegrityError, RepositoryError

NONCE_SIZE = 12
TAG_SIZE = 16
ID_SIZE = 32
OVERHEAD = NONCE_SIZE + TAG_SIZE
KEY_FILE_VERSION = 1

# scrypt N=2^15, r=8, p=1: about 32 MiB and 0.1 s per attempt on this machine.
DEFAULT_KDF = {"n": 2**15, "r": 8, "p": 1}


@dataclass(frozen=True)
class MasterKey:
    encryption: bytes
    chunk_id: bytes
    role: str = "admin"
    """``admin`` or ``append`` (append-only: may add, never delete). Stored
    inside the wrapped, authenticated payload of each key file."""

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32), os.urandom(32))

    def blob_id(self, plaintext: bytes | memoryview) -> bytes:
        """Keyed BLAKE3 of the plaintext: the blob's id."""
        return blake3.blake3(plaintext, key=self.chunk_id).digest()

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + AESGCM(self.encryption).encrypt(nonce, plaintext, aad)

    def decrypt(self, data: bytes, aad: bytes, what: str) -> bytes:
        if len(data) < OVERHEAD:
            raise IntegrityError(f"{what}: encrypted object is truncated ({len(data)} bytes)")
        try:
            return AESGCM(self.encryption).decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], aad)
        except InvalidTag as exc:
            raise IntegrityError(f"{what}: authentication failed (corrupted or tampered)") from exc

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "encryption": _b64(self.encryption),
                "chunk_id": _b64(self.chunk_id),
                "role": self.role,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> MasterKey:
        obj = json.loads(raw)
        return cls(_unb64(obj["encryption"]), _unb64(obj["chunk_id"]), obj.get("role", "admin"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


def _derive(passphrase: str, salt: bytes, kdf: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
        passphrase.encode()
    )


def wrap_master_key(
    master: MasterKey, passphrase: str, kdf: dict[str, int] | None = None
) -> dict[str, Any]:
    """Build a key file document: the master key encrypted by the passphrase."""
    params = dict(kdf or DEFAULT_KDF)
    salt = os.urandom(32)
    kek = _derive(passphrase, salt, params)
    nonce = os.urandom(NONCE_SIZE)
    wrapped = nonce + AESGCM(kek).encrypt(nonce, master.to_json(), b"dbfleet-key")
    return {
        "version": KEY_FILE_VERSION,
        "kdf": {"name": "scrypt", **params, "salt": _b64(salt)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "username": getpass.getuser(),
        "role": master.role,  # informational; the authoritative role is inside "data"
        "data": _b64(wrapped),
    }


def unwrap_master_key(document: dict[str, Any], passphrase: str) -> MasterKey | None:
    """The master key if ``passphrase`` opens this key file, else ``None``."""
    if document.get("version") != KEY_FILE_VERSION:
        raise RepositoryError(f"unsupported key file version {document.get('version')!r}")
    kdf = document["kdf"]
    if kdf.get("name") != "scrypt":
        raise RepositoryError(f"unsupported key derivation {kdf.get('name')!r}")
    kek = _derive(passphrase, _unb64(kdf["salt"]), kdf)
    wrapped = _unb64(document["data"])
    try:
        raw = AESGCM(kek).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], b"dbfleet-key")
    except InvalidTag:
        return None
    return MasterKey.from_json(raw)
