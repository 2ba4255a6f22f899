"""SSH host keys: which keys can be pinned, a `hostKey` line checked, and OpenSSH's known_hosts read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

# Host key types that can be pinned, with the (curve name, point length) an ECDSA key carries.
# ssh-rsa is left out: the command provider offers only the pinned key's own algorithm, and for an
# RSA key that is SHA-1 `ssh-rsa`, which OpenSSH 8.8 and later refuse, so every dial would fail.
_ECDSA = {
    "ecdsa-sha2-nistp256": (b"nistp256", 65),
    "ecdsa-sha2-nistp384": (b"nistp384", 97),
    "ecdsa-sha2-nistp521": (b"nistp521", 133),
}
PINNABLE_KEY_TYPES = ("ssh-ed25519", *_ECDSA)


def ssh_strings(blob: bytes) -> list[bytes] | None:
    """The length-prefixed strings of an SSH wire-format blob, or None when it does not split whole."""
    fields: list[bytes] = []
    position = 0
    while position < len(blob):
        if position + 4 > len(blob):
            return None
        size = int.from_bytes(blob[position:position + 4], "big")
        if position + 4 + size > len(blob):
            return None
        fields.append(blob[position + 4:position + 4 + size])
        position += 4 + size
    return fields


def public_key_problem(key_type: str, encoded: str) -> str | None:
    """Why `key_type encoded` is not a complete, pinnable SSH public key, or None."""
    if key_type == "ssh-rsa":
        return (
            "an ssh-rsa host key cannot be pinned (the SSH client would negotiate SHA-1 ssh-rsa, which "
            "OpenSSH 8.8+ refuses); pin the node's ed25519 or ecdsa key instead: ssh-keyscan -t ed25519 "
            "<node>, or /etc/ssh/ssh_host_ed25519_key.pub"
        )
    if key_type not in PINNABLE_KEY_TYPES:
        return f"unknown host key type {key_type!r} (allowed: {', '.join(PINNABLE_KEY_TYPES)})"
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64"
    fields = ssh_strings(blob)
    if not fields or fields[0] != key_type.encode():
        return f"the key data is not a whole {key_type} key (truncated, or another key type)"
    if key_type == "ssh-ed25519":
        whole = len(fields) == 2 and len(fields[1]) == 32
    else:
        curve, point = _ECDSA[key_type]
        whole = len(fields) == 3 and fields[1] == curve and len(fields[2]) == point and fields[2][:1] == b"\x04"
    return None if whole else f"the key data is not a whole {key_type} key (truncated, or another key type)"


def host_key_line(value: str) -> str:
    parts = value.split(" ")
    if len(parts) != 2 or not value.isprintable():
        raise ValueError(
            f"{value[:60]!r}: a host key is one line 'TYPE BASE64' with nothing after it "
            "(as in /etc/ssh/ssh_host_ed25519_key.pub, without the comment)"
        )
    problem = public_key_problem(*parts)
    if problem:
        raise ValueError(f"{value[:60]!r}...: {problem}" if len(value) > 60 else f"{value!r}: {problem}")
    return value


def known_hosts_name(address: str, port: int) -> str:
    """The name OpenSSH looks up in known_hosts: `host`, or `[host]:port` off port 22."""
    host = address.lower()
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_matches(pattern: str, name: str) -> bool:
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower())
    return re.fullmatch(regex, name) is not None


def _hosts_field_matches(field: str, name: str) -> bool:
    """OpenSSH's known_hosts host field: a hashed `|1|salt|hash` (HMAC-SHA1 of the name keyed with
    the salt), or a comma list of patterns with `*`, `?` and `!` negation."""
    if field.startswith("|1|"):
        _, _, salt, digest = [*field.split("|"), "", ""][:4]
        try:
            expected = base64.b64decode(digest, validate=True)
            mac = hmac.new(base64.b64decode(salt, validate=True), name.encode(), hashlib.sha1).digest()
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(mac, expected)
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], name):
                return False
        elif _pattern_matches(pattern, name):
            matched = True
    return matched


def known_host_keys(text: str, address: str, port: int) -> list[str]:
    """Every `TYPE BASE64` key that known_hosts `text` holds for address:port, in file order;
    revoked keys and certificate authorities are left out, and so is a malformed line."""
    name = known_hosts_name(address, port)
    keys: list[str] = []
    revoked: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if len(fields) < 3 or not _hosts_field_matches(fields[0], name):
            continue
        key = f"{fields[1]} {fields[2]}"
        if marker == "@revoked":
            revoked.add(key)
        elif marker is None:
            keys.append(key)
    return [key for key in keys if key not in revoked]
