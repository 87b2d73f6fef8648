"""SSH public keys of CloudAPI accounts: parsing, fingerprints and signature checks.

CloudAPI's clients (node-smartdc, smartdc-auth) sign requests with an account's SSH key and
name it by its MD5 fingerprint (``aa:bb:...``, the form ``ssh-keygen -l -E md5`` prints);
newer clients name it by its SHA-256 fingerprint (``SHA256:...``). Only the public half is
ever kept. Parsing and verification are done by ``cryptography`` (OpenSSL), never here.

Accepted: RSA of at least :data:`MIN_RSA_BITS` bits, ECDSA on NIST P-256/384/521, Ed25519.
DSA is refused (OpenSSH itself dropped it).

Signature algorithms are the ones the original accepted (the ``http-signature`` names):
``rsa-sha1`` (what smartdc-auth signs with when the key is in an ssh-agent), ``rsa-sha256``,
``rsa-sha512``, ``ecdsa-sha256/384/512`` (DER signatures) and ``ed25519-sha512`` (raw
64-byte signatures; the hash is Ed25519's own).
"""

from __future__ import annotations

import base64
import hashlib
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

MIN_RSA_BITS = 2048
MAX_KEY_TEXT = 16_384  # an RSA-16384 key is about 2.8 kB of text
KINDS = ("rsa", "ecdsa", "ed25519")
_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class PublicKey(NamedTuple):
    """A parsed public key as the store keeps it."""

    kind: str  # one of KINDS
    bits: int
    md5: str  # "aa:bb:..." (16 bytes), CloudAPI's key id
    sha256: str  # "SHA256:<base64 without padding>", as ssh-keygen -l prints it
    text: str  # "<type> <base64>" (OpenSSH one-line form, without the comment)
    comment: str


def parse_public_key(text: str) -> PublicKey:
    """The key of one OpenSSH public key line (``ssh-ed25519 AAAA... comment``); ValueError
    naming the reason otherwise."""
    text = text.strip()
    if not text or len(text) > MAX_KEY_TEXT or "\n" in text:
        raise ValueError("must be one OpenSSH public key line (the .pub file), "
                         "e.g. 'ssh-ed25519 AAAA... you@host'")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise ValueError("must be '<type> <base64> [comment]' (the .pub file)")
    if "PRIVATE KEY" in text:
        raise ValueError("this is a private key: give the public one (the .pub file)")
    try:
        key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a public key fleetscope can use ({exc})") from None
    if isinstance(key, rsa.RSAPublicKey):
        kind, bits = "rsa", key.key_size
        if bits < MIN_RSA_BITS:
            raise ValueError(f"an RSA key needs at least {MIN_RSA_BITS} bits (this one has {bits})")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind, bits = "ecdsa", key.curve.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        kind, bits = "ed25519", 256
    else:
        raise ValueError("only RSA, ECDSA and Ed25519 keys are accepted")
    blob = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    raw = base64.b64decode(blob.split()[1])
    md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    sha = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    return PublicKey(kind, bits, ":".join(md5[i:i + 2] for i in range(0, 32, 2)), f"SHA256:{sha}",
                     blob.decode(), parts[2].strip() if len(parts) > 2 else "")


def normalise_fingerprint(text: str) -> str:
    """A key id's fingerprint in the form the store keys it by: MD5 as lower-case
    ``aa:bb:..`` (an ``MD5:`` prefix dropped), SHA-256 as ``SHA256:...``; ValueError otherwise."""
    text = text.strip()
    if text.upper().startswith("MD5:"):
        text = text[4:]
    hexdigits = text.replace(":", "").lower()
    if len(hexdigits) == 32 and all(c in "0123456789abcdef" for c in hexdigits):
        return ":".join(hexdigits[i:i + 2] for i in range(0, 32, 2))
    if text.startswith("SHA256:") and 40 <= len(text) <= 60:
        return text.rstrip("=")
    raise ValueError("must be an MD5 (aa:bb:...) or SHA256:... key fingerprint")


def verify(key_text: str, algorithm: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``data`` signed by the key ``key_text`` (as :class:`PublicKey`
    keeps it) with ``algorithm`` (``rsa-sha256``...). A key of another kind than the algorithm
    names, or an unknown algorithm, is False, never an exception."""
    kind, _, hash_name = algorithm.lower().partition("-")
    key = load_ssh_public_key(key_text.encode())
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey) and hash_name in _HASHES:
            key.verify(signature, data, padding.PKCS1v15(), _HASHES[hash_name]())
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey) and hash_name in _HASHES \
                and hash_name != "sha1":
            key.verify(signature, data, ec.ECDSA(_HASHES[hash_name]()))
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey) and hash_name == "sha512":
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
