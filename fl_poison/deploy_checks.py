"""Checks made before any Flower process starts: certificates, node keys, ports, host names.

Why before: a SuperLink given a server key that does not match its
certificate, or SuperNodes given a CA that did not sign it, start anyway and
then fail or wait in silence. Each check here returns one sentence naming the
file or option and what is wrong, so ``deploy up`` can refuse up front.
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import re
import socket
from pathlib import Path

MAX_PORT = 65535
NODE_PORT_OFFSET = 100  # SuperNode I's Runtime API port is the SuperLink port + 100 + I
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class DeployError(Exception):
    """A deployment command cannot go on; ``code`` is its exit status (2: bad input, 1: it failed)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a certificate SAN (None: an IP address or a DNS name, ``*.`` allowed first)."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[2:] if host.startswith("*.") else host
    if not name or len(name) > 253 or not all(_DNS_LABEL.fullmatch(lab) for lab in name.rstrip(".").split(".")):
        return "a DNS name (letters, digits, '-', labels joined by '.') or an IP address"
    return None


def port_problem(port: int, nodes: int) -> str | None:
    """Why the SuperLink port cannot be used with ``nodes`` SuperNodes (their ports follow it)."""
    last = port + NODE_PORT_OFFSET + nodes - 1
    if not 1 <= port <= MAX_PORT:
        return f"a port 1..{MAX_PORT}"
    if last > MAX_PORT:
        return (f"a port 1..{MAX_PORT - NODE_PORT_OFFSET - nodes + 1}: the SuperNodes listen on --port + "
                f"{NODE_PORT_OFFSET} + I, up to {last} here")
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Something already listens on ``host:port`` (SO_REUSEADDR, as servers bind: TIME_WAIT is no conflict)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def busy_ports(port: int, nodes: int, host: str = "127.0.0.1") -> str | None:
    """One sentence about the first port of this federation already taken, or None."""
    if port_in_use(port, host):
        return f"{host}:{port} (the SuperLink's) is already in use"
    for i in range(nodes):
        p = port + NODE_PORT_OFFSET + i
        if port_in_use(p, host):
            return f"{host}:{p} (SuperNode node{i}'s, --port + {NODE_PORT_OFFSET + i}) is already in use"
    return None


def _load_cert(path: Path):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise DeployError(f"{path} is missing") from None
    except (ValueError, OSError) as exc:
        raise DeployError(f"{path} is not a PEM certificate ({exc})") from None


def _valid_now(path: Path, cert, now: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise DeployError(f"{path} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                          f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now: make new ones with --force")


def _same_key(a, b) -> bool:
    from cryptography.hazmat.primitives import serialization

    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def check_server_certificates(certs: Path, address_host: str = "127.0.0.1",
                              now: dt.datetime | None = None) -> None:
    """The SuperLink's certificate chains to ``ca.crt``, is valid now, names ``address_host``; its key matches.

    These are the checks a SuperNode's TLS handshake makes, done here so that
    the failing file is named (Flower only logs a handshake error).
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    now = now or dt.datetime.now(dt.timezone.utc)
    ca_path, srv_path, key_path = certs / "ca.crt", certs / "server.pem", certs / "server.key"
    ca, srv = _load_cert(ca_path), _load_cert(srv_path)
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise DeployError(f"{ca_path} is not a CA certificate (no basicConstraints CA:TRUE)")
    try:
        srv.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise DeployError(f"{srv_path} was not issued by {ca_path} (a CA from another federation?): SuperNodes "
                          f"would refuse the SuperLink; use the CA that signed it, or make both anew with "
                          f"`fl-poison deploy certs {certs.parent} --force`") from None
    _valid_now(ca_path, ca, now)
    _valid_now(srv_path, srv, now)
    try:
        san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    try:
        wanted = ipaddress.ip_address(address_host)
        covered = wanted in san.get_values_for_type(x509.IPAddress)
    except ValueError:
        covered = address_host in san.get_values_for_type(x509.DNSName)
    if not covered:
        raise DeployError(f"{srv_path} does not name {address_host} (subject alternative names: "
                          f"{[str(v) for v in san] or 'none'}), the address the SuperNodes connect to")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except FileNotFoundError:
        raise DeployError(f"{key_path} is missing") from None
    except (ValueError, TypeError, OSError) as exc:
        raise DeployError(f"{key_path} is not an unencrypted PEM private key ({exc})") from None
    if not _same_key(key.public_key(), srv.public_key()):
        raise DeployError(f"{key_path} is not the key of {srv_path} (their public keys differ)")


def node_key_count(certs: Path) -> int:
    """How many consecutive node key pairs ``node0.key``, ``node1.key``, … ``certs`` holds."""
    n = 0
    while (certs / f"node{n}.key").exists():
        n += 1
    return n


def check_node_keys(certs: Path, nodes: int) -> None:
    """``node0.key`` … ``node{nodes-1}.key``: OpenSSH EC private keys on a NIST curve, each with its own ``.pub``."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    have = node_key_count(certs)
    if have < nodes:
        raise DeployError(f"--nodes {nodes}: {certs} holds keys for {have} SuperNode(s) (node0..node{have - 1}); "
                          f"make {nodes} with `fl-poison deploy certs {certs.parent} -n {nodes} --force` "
                          "(this replaces the CA too)" if have else
                          f"--nodes {nodes}: {certs} holds no SuperNode keys (node0.key, ...); make them with "
                          f"`fl-poison deploy certs {certs.parent} -n {nodes} --force`")
    for i in range(nodes):
        priv_path, pub_path = certs / f"node{i}.key", certs / f"node{i}.key.pub"
        try:
            priv = load_ssh_private_key(priv_path.read_bytes(), None)
        except (ValueError, TypeError, OSError) as exc:
            raise DeployError(f"{priv_path} is not an unencrypted OpenSSH private key ({exc})") from None
        if not isinstance(priv, ec.EllipticCurvePrivateKey):
            raise DeployError(f"{priv_path} is not an EC key (Flower accepts NIST-curve EC keys only)")
        try:
            pub = load_ssh_public_key(pub_path.read_bytes())
        except FileNotFoundError:
            raise DeployError(f"{pub_path} is missing (the public half of {priv_path.name})") from None
        except (ValueError, TypeError, OSError) as exc:
            raise DeployError(f"{pub_path} is not an OpenSSH public key ({exc})") from None
        if not _same_key(priv.public_key(), pub):
            raise DeployError(f"{pub_path} is not the public half of {priv_path}")
