"""A real S3-compatible server on 127.0.0.1 for the s3:// model tests: S3Proxy.

S3Proxy (``scripts/install-s3proxy.sh`` fetches its jar once into the cache; the
fixture runs the script, so ``make test`` installs it on a fresh machine) serves the
S3 API over its filesystem backend with real SigV4 authentication for one access key,
on a plain-http port and a TLS port whose certificate a throwaway CA signs. When Java
or Maven is missing, or the download fails, the tests skip with the reason (or fail
under ``KANARIA_REQUIRE_ALL=1``).

Objects are uploaded through the S3 API (obstore, signed with the server's key).
Buckets are made as the filesystem backend keeps them, a directory under its base
dir: obstore has no call to create one.

The server runs under ``setpriv --pdeathsig KILL``, so it dies with the test process
even when that is killed; otherwise the fixture stops it by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import obstore
import pytest
from obstore.store import S3Store

from tests.support import procs
from tests.support.controlplane import unavailable

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "install-s3proxy.sh"
ACCESS_KEY = "kanaria-test"
SECRET_KEY = "kanaria-test-secret"
BUCKET = "models"
START_TIMEOUT = 120.0
"""Seconds for the JVM to answer; generous because the machine is shared."""

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ALLOW_HTTP",
    "AWS_SKIP_SIGNATURE",
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_METADATA_ENDPOINT",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "S3_ENDPOINT",
    "S3_USE_HTTPS",
    "S3_VERIFY_SSL",
    "S3_USER_VIRTUAL_BUCKET",
    "awsAnonymousCredential",
)
"""Variables that steer an S3 client: tests clear them from their own environment so that
only what a test sets reaches the model servers it starts."""


@dataclass
class S3Server:
    """A running S3Proxy."""

    proc: procs.Process
    endpoint: str
    """http://127.0.0.1:PORT"""
    tls_endpoint: str
    """https://127.0.0.1:PORT, certificate signed by ``ca_bundle``."""
    ca_bundle: Path
    base_dir: Path
    closed_port: int
    """A local port nothing listens on, where credential lookups that must fail go."""

    def env(self, **overrides: str) -> dict[str, str]:
        """What a model server needs to read from this server with its key.

        ``AWS_METADATA_ENDPOINT`` points at a closed local port, so that a test without
        keys makes obstore's instance-metadata lookup fail here, on 127.0.0.1.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_METADATA_ENDPOINT": f"http://127.0.0.1:{self.closed_port}",
            **overrides,
        }

    def make_bucket(self, name: str) -> None:
        (self.base_dir / name).mkdir(exist_ok=True)

    def put(self, key: str, data: bytes, bucket: str = BUCKET) -> str:
        """Upload ``data`` through the S3 API; returns its s3:// URI."""
        self.make_bucket(bucket)
        store = S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
            client_options={"allow_http": True, "timeout": timedelta(seconds=60)},
        )
        obstore.put(store, key, data)
        return f"s3://{bucket}/{key}"


def install() -> Path:
    """The S3Proxy jar, installed by the script on first use."""
    for tool in ("java", "mvn", "openssl", "setpriv"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not found: the S3 test server needs it (make system-deps)")
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False, timeout=600
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        unavailable(f"{INSTALL_SCRIPT.name} failed: {done.stderr.strip()[-2000:]}")
    return Path(lines[-1])


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 it signs, as a PKCS#12
    keystore for Jetty. Returns (keystore, CA certificate)."""
    ca_key, ca, key, csr, cert, ext = (
        folder / n for n in ("ca.key", "ca.pem", "tls.key", "tls.csr", "tls.pem", "ext.cnf")
    )
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
         "-out", str(ca), "-days", "2", "-subj", "/CN=kanaria-test-ca")  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(csr), "-subj", "/CN=127.0.0.1")  # fmt: skip
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    keystore = folder / "keystore.p12"
    _run("openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
         "-out", str(keystore), "-passout", "pass:kanaria", "-name", "s3proxy")  # fmt: skip
    return keystore, ca


def start(jar: Path, work: Path) -> S3Server:
    """Start S3Proxy on two free ports of 127.0.0.1 and wait until it answers."""
    base = work / "data"
    base.mkdir(parents=True)
    keystore, ca = make_certificates(work)
    port, tls_port, closed = procs.free_port(), procs.free_port(), procs.free_port()
    properties = work / "s3proxy.properties"
    properties.write_text(
        "\n".join(
            [
                f"s3proxy.endpoint=http://127.0.0.1:{port}",
                f"s3proxy.secure-endpoint=https://127.0.0.1:{tls_port}",
                f"s3proxy.keystore-path={keystore}",
                "s3proxy.keystore-password=kanaria",
                "s3proxy.authorization=aws-v2-or-v4",
                f"s3proxy.identity={ACCESS_KEY}",
                f"s3proxy.credential={SECRET_KEY}",
                "jclouds.provider=filesystem",
                "jclouds.identity=unused",
                "jclouds.credential=unused",
                f"jclouds.filesystem.basedir={base}",
                "",
            ]
        )
    )
    java = shutil.which("java") or "java"
    args = ["setpriv", "--pdeathsig", "KILL", "--",
            java, "-Xmx256m", "-jar", str(jar), "--properties", str(properties)]  # fmt: skip
    proc = procs.start(args, work, "s3proxy")
    server = S3Server(
        proc, f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}", ca, base, closed
    )
    try:
        # Anonymous requests are refused as S3 refuses them: 403 AccessDenied.
        proc.wait_http(f"{server.endpoint}/", START_TIMEOUT, status=403)
    except BaseException:
        proc.stop()
        raise
    return server


@contextmanager
def s3_server(work: Path) -> Iterator[S3Server]:
    """A running S3Proxy (installed on first use) until the block ends, stopped by PID."""
    server = start(install(), work)
    try:
        yield server
    finally:
        server.proc.stop()


def clean_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calling test's process (and what it starts) sees no S3 settings but its own."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
