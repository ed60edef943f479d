"""A software WebAuthn authenticator and client, built on pyca/cryptography (EC P-256,
ES256) and cbor2: "none" attestation, assertions with a signature counter, and the UP, UV,
BE and BS flags. It plays the browser too: it writes the clientDataJSON with the origin it
is told, so that tests can forge a wrong origin or RP ID."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64(data: bytes) -> str:
    """base64url without padding, as WebAuthn's JSON encodes bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes of a base64url string (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    """One credential: its id, key, user handle and counter."""

    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    def cose_key(self) -> bytes:
        """The public key as a COSE_Key (EC2, P-256, ES256)."""
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


class CredentialExcluded(Exception):
    """The browser's InvalidStateError: this authenticator holds an excluded credential."""


@dataclass
class SoftAuthenticator:
    """A platform authenticator for one origin. ``counting``: it keeps a signature counter
    (else 0 always); ``verifies_user``: it performs user verification; ``synced``: its
    credentials are backup eligible and backed up (a synced passkey)."""

    origin: str
    rp_id: str
    counting: bool = True
    verifies_user: bool = True
    synced: bool = False
    aaguid: bytes = bytes(16)
    credentials: dict[bytes, Credential] = field(default_factory=dict)

    def _flags(self, *, uv: bool, attested: bool = False) -> int:
        flags = UP | (UV if uv else 0)
        if self.synced:
            flags |= BE | BS
        return flags | (AT if attested else 0)

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        reuse: bytes | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.create()``: a new credential, with "none" attestation;
        the RegistrationResponseJSON. ``reuse``: the id of a credential to answer with
        again (what no honest authenticator does)."""
        for excluded in options.get("excludeCredentials", []):
            if unb64(excluded["id"]) in self.credentials:
                raise CredentialExcluded(excluded["id"])
        rp = rp_id or self.rp_id
        credential = Credential(
            id=reuse or os.urandom(16),
            key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp,
            user_handle=unb64(options["user"]["id"]),
        )
        self.credentials[credential.id] = credential
        uv = self.verifies_user and options["authenticatorSelection"]["userVerification"] != (
            "discouraged"
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(uv=uv, attested=True)])
            + credential.sign_count.to_bytes(4, "big")
            + self.aaguid
            + len(credential.id).to_bytes(2, "big")
            + credential.id
            + credential.cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data(
            "webauthn.create", options["challenge"], origin or self.origin
        )
        return {
            "id": b64(credential.id),
            "rawId": b64(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "attestationObject": b64(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.get()``: an assertion by an allowed credential (any of
        this RP's when none is listed: a discoverable login); the AuthenticationResponseJSON."""
        allowed = [unb64(c["id"]) for c in options.get("allowCredentials", [])]
        candidates = [
            c
            for c in self.credentials.values()
            if c.rp_id == options["rpId"] and (not allowed or c.id in allowed)
        ]
        assert candidates, "no credential for this RP"
        credential = candidates[0]
        if self.counting:
            credential.sign_count += 1
        rp = rp_id or self.rp_id
        uv = self.verifies_user and options.get("userVerification") != "discouraged"
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(uv=uv)])
            + credential.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin or self.origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64(credential.id),
            "rawId": b64(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(credential.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def clone(self) -> SoftAuthenticator:
        """A copy of this authenticator with the same keys and counters, from now on
        counting on its own: what an extracted key looks like."""
        return copy.deepcopy(self)
