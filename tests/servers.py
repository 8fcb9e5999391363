"""Real servers on 127.0.0.1 for sync tests: OpenSSH's sshd and moto's S3 server.

Started by fixtures, stopped by them. Under CI=true a missing sshd is a
failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def not_quick(request: pytest.FixtureRequest, name: str) -> None:
    """Fail a test of the quick subset that starts the server ``name`` anyway (by
    a name ``conftest.uses_a_server`` does not see), so that the subset stays
    what it says: no servers."""
    item = getattr(request, "_pyfuncitem", None)
    if item is not None and item.get_closest_marker("slow") is None:
        pytest.fail(f"{item.nodeid} starts {name} but is not marked slow: name the "
                    "fixture in its arguments or mark the test slow", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@dataclass
class SSHServer:
    port: int
    key: Path
    known_hosts: Path
    user: str

    def deploy(self, base: str, **extra: object) -> dict:
        """A ``deploy`` section pushing to ``base`` on this server."""
        return {
            "url": f"sftp://{self.user}@127.0.0.1:{self.port}{base}/{{host}}",
            "ssh": {"key": str(self.key), "known_hosts": str(self.known_hosts)},
            **extra,
        }


def start_sshd(d: Path) -> tuple[subprocess.Popen, SSHServer]:
    """Start OpenSSH's sshd on a free port of 127.0.0.1 with keys made in ``d``."""
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "Subsystem sftp internal-sftp\nMaxSessions 30\nMaxStartups 50\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
    except BaseException:
        stop(proc)
        raise
    host_pub = (d / "host.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    user = os.environ.get("USER") or subprocess.run(
        ["id", "-un"], capture_output=True, text=True).stdout.strip()
    return proc, SSHServer(port, d / "client", d / "known_hosts", user)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory,
         request: pytest.FixtureRequest) -> Iterator[SSHServer]:
    not_quick(request, "sshd")
    if not os.path.exists(SSHD):
        if os.environ.get("CI"):
            pytest.fail("sshd is not installed (apt-get install openssh-server)")
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    proc, server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop(proc)


@dataclass
class S3Server:
    endpoint: str
    bucket: str

    def deploy(self, prefix: str, **extra: object) -> dict:
        return {
            "url": f"s3://{self.bucket}/{prefix}/{{host}}",
            "s3": {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing",
                   "region": "us-east-1"},
            **extra,
        }


@pytest.fixture(scope="session")
def s3server(request: pytest.FixtureRequest) -> Iterator[S3Server]:
    not_quick(request, "an S3 server")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket="deploy")
        yield S3Server(endpoint, "deploy")
    finally:
        server.stop()
