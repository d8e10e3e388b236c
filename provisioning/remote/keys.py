"""SSH key material: the panel's per-host ed25519 key pairs and OpenSSH fingerprints."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """An OpenSSH private key (PEM text) and its ``authorized_keys`` public line."""

    private_openssh: str
    public_openssh: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_line(self.public_openssh)


def keypair_generate(comment: str) -> KeyPair:
    """A fresh ed25519 key pair for the panel to log in to one host."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return KeyPair(private_openssh=private, public_openssh=f"{public} {comment}".strip())


def fingerprint_of_blob(blob: bytes) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint of a public key blob (as ``ssh-keygen -l`` prints)."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def fingerprint_of_key(key: paramiko.PKey) -> str:
    return fingerprint_of_blob(key.asbytes())


def fingerprint_of_line(line: str) -> str:
    """Fingerprint of an OpenSSH public key line (``type base64 [comment]``)."""
    parts = line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    return fingerprint_of_blob(base64.b64decode(parts[1]))


def openssh_line(key: paramiko.PKey) -> str:
    """``type base64`` of a paramiko public key, as in known_hosts / authorized_keys."""
    return f"{key.get_name()} {key.get_base64()}"


def key_type_of_line(line: str) -> str:
    return line.split()[0] if line.strip() else ""


def private_key_load(text: str) -> paramiko.PKey:
    """Load the panel's private key (OpenSSH format) for paramiko."""
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("the stored private key cannot be read (unknown format)")
