"""A self-signed CA and a server certificate for the emulated API server's HTTPS port.

Made once per process (EC P-256 keys, quick) with the ``cryptography`` package when it is
installed, else with the ``openssl`` command line, into a temporary folder removed at exit.
The server certificate is valid for ``127.0.0.1``, ``::1``, ``localhost`` and the in-cluster
names ``kubernetes``, ``kubernetes.default``, ``kubernetes.default.svc`` (and
``.cluster.local``), so one certificate serves every emulator on any port.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

__all__ = ["TLSBundle", "default_bundle", "make_bundle"]

DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
IP_ADDRESSES = ("127.0.0.1", "::1")


@dataclasses.dataclass(frozen=True)
class TLSBundle:
    """PEM files: the CA's certificate (what clients trust) and the server's cert and key."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_path.read_text()

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the server side (TLS 1.2+)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        return context


def make_bundle(folder: Path) -> TLSBundle:
    """Create a CA and a server certificate signed by it in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _make_with_openssl(folder)
    return _make_with_cryptography(folder)


@functools.cache
def default_bundle() -> TLSBundle:
    """The process-wide bundle (made on first use, removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="kube-emulator-tls-"))
    atexit.register(shutil.rmtree, folder, True)
    return make_bundle(folder)


def _make_with_openssl(folder: Path) -> TLSBundle:
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "server.ext"
    alt_names = [f"DNS:{n}" for n in DNS_NAMES] + [f"IP:{ip}" for ip in IP_ADDRESSES]
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(alt_names)}\n"
    )

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "3650",
        "-subj", "/CN=kube-emulator-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    run("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "3650", "-extfile", str(ext),
    )  # fmt: skip
    return TLSBundle(ca_crt, crt, key)


def _make_with_cryptography(folder: Path) -> TLSBundle:  # pragma: no cover - not installed here
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=3650)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("kube-emulator-ca"))
        .issuer_name(name("kube-emulator-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in DNS_NAMES] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("kube-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = TLSBundle(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    paths.ca_path.write_bytes(ca_cert.public_bytes(pem))
    paths.cert_path.write_bytes(cert.public_bytes(pem))
    paths.key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths
