"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

Everything is generated per session under a temporary folder: a CA, the apiserver's serving
certificate (and the one the kubelet stand-in serves logs with), the service-account signing
key, a static token for the admin (group `system:masters`), and kubeconfigs. The apiserver runs
with RBAC (`Node,RBAC`) and the `OwnerReferencesPermissionEnforcement` admission plugin, so an
identity may only set `blockOwnerDeletion` on an owner whose finalizers it may update; the
controller-manager runs the Job controller, the garbage collector and the service-account
controller (every namespace gets its `default` account, which pod admission asks for). Ports
are free ones picked at start; the apiserver can be restarted on the same port and etcd.

The binaries come from `scripts/kube-binaries.sh` (TRAINPORT_KUBE_BIN, else its default cache).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kubernetes import client as k

VERSION = "1.20.2"
BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")
READY_TIMEOUT_S = 90.0


def kube_bin() -> Path | None:
    """Where the binaries are: TRAINPORT_KUBE_BIN, else the build script's default cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    default = Path(os.environ.get("TRAINPORT_KUBE_CACHE") or cache / f"trainport/kube-{VERSION}")
    for folder in (os.environ.get("TRAINPORT_KUBE_BIN"), default / "bin"):
        if folder and all(os.access(Path(folder) / name, os.X_OK) for name in BINARIES):
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- certificates -------------------------------------------------------------------------------


@dataclass
class Pki:
    folder: Path
    ca_key: rsa.RSAPrivateKey = field(init=False)
    ca_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca_key = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trainport-test-ca")])
        builder = _builder(name, name, self.ca_key).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
        self.ca_cert = builder.sign(self.ca_key, hashes.SHA256())
        self.ca_file.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    def serving(self, name: str) -> tuple[Path, Path]:
        """A certificate for 127.0.0.1/localhost signed by the CA: (cert file, key file)."""
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
        ]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            _builder(subject, self.ca_cert.subject, key)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_file, key_file = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem(key))
        return cert_file, key_file

    def key_pair(self, name: str) -> tuple[Path, Path]:
        """An RSA key pair (public file, private file): the service-account signing key."""
        key = _key()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        public_file, private_file = self.folder / f"{name}.pub", self.folder / f"{name}.key"
        public_file.write_bytes(public)
        private_file.write_bytes(_pem(key))
        return public_file, private_file


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


# -- processes ----------------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started and stopped as one."""

    def __init__(self, bin_dir: Path, work: Path) -> None:
        self.bin = bin_dir
        self.work = work
        self.pki = Pki(work / "pki")
        self.admin_token = secrets.token_hex(16)
        self.api_port, self.etcd_port, self.peer_port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.api_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts = 0
        # Made once: a restarted apiserver must still accept the tokens it signed before.
        self.serving = self.pki.serving("apiserver")
        self.service_account_keys = self.pki.key_pair("service-account")

    # -- identities -----------------------------------------------------------------------------

    def kubeconfig(self, name: str, token: str) -> Path:
        """A kubeconfig for one identity (a bearer token), as a worker would be given."""
        path = self.work / f"{name}.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "real",
                    "cluster": {"server": self.url, "certificate-authority": str(self.pki.ca_file)},
                }
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "real", "user": name}}],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def client(self, token: str | None = None) -> k.ApiClient:
        configuration = k.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.pki.ca_file)
        configuration.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return k.ApiClient(configuration)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._start_etcd()
        self.start_apiserver()
        self._start_controller_manager()

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(name)

    def restart_apiserver(self) -> None:
        """Stop the apiserver (every watch and request fails) and start it again on its port."""
        self._stop("kube-apiserver")
        self.restarts += 1
        self.start_apiserver()

    def _start_etcd(self) -> None:
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.peer_port}"
        self._spawn(
            "etcd",
            f"--data-dir={self.work / 'etcd'}",
            "--name=default",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--log-level=warn",
        )
        self._wait(lambda: _http_ok(f"{client}/health"), "etcd")

    def start_apiserver(self) -> None:
        cert, key = self.serving
        sa_public, sa_private = self.service_account_keys
        tokens = self.work / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            "--insecure-port=0",
            f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--service-account-key-file={sa_public}",
            f"--service-account-signing-key-file={sa_private}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            f"--kubelet-certificate-authority={self.pki.ca_file}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--cert-dir={self.work / 'apiserver-certs'}",
            "--profiling=false",
            "--v=0",
        )
        self._wait(self._apiserver_ready, "kube-apiserver")

    def _start_controller_manager(self) -> None:
        admin = self.kubeconfig("controller-manager", self.admin_token)
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={admin}",
            "--controllers=job,garbagecollector,serviceaccount",
            "--leader-elect=false",
            "--port=0",
            "--secure-port=0",
            "--concurrent-gc-syncs=5",
            # The default 20 requests/s would make 1,000 Jobs' pods (bench/) take minutes.
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--v=0",
        )

    def alive(self) -> None:
        """Raise, naming its log, if a process of the control plane has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}); see {self.log(name)}")

    def _apiserver_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca_file))
        request = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        return _http_ok(request, context)

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.work / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(self.bin / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def _wait(self, ready: Callable[[], bool], name: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        process = self.processes[name]
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}); see {self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {READY_TIMEOUT_S}s; see {self.log(name)}")
            time.sleep(0.1)

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"


def _http_ok(request: str | urllib.request.Request, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
