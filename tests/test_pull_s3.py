"""facs publish and facs pull through a real S3-compatible server (moto) on 127.0.0.1
that counts the requests it serves: a no-op pull is one GET, a server that stops
mid-pull changes nothing on the host."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from pullworld import A1, World, tree
from servers import free_port

from facsimile.errors import SyncError
from facsimile.pull.store import Store

pytestmark = pytest.mark.slow

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}
#: fail fast when the server is gone (s3fs and botocore retry for seconds otherwise)
FAST = {"storage_options": {"config_kwargs": {"retries": {"max_attempts": 1},
                                              "connect_timeout": 2, "read_timeout": 5}}}


class CountingServer(ThreadedMotoServer):
    """moto's S3 server, keeping ``(method, path)`` of every request it serves."""

    def __init__(self, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.requests: list[tuple[str, str]] = []

    def _server_entry(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ, start_response):  # type: ignore[no-untyped-def]
            self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            return app(environ, start_response)

        self._server = make_server(self._ip_address, self._port, counting, True)
        self._server_ready_event.set()
        self._server.serve_forever()


class S3World(World):
    """The World of test_pull, published to a bucket of a counting server."""

    def __init__(self, base: Path, server: CountingServer, endpoint: str) -> None:
        self.server, self.endpoint = server, endpoint
        super().__init__(base)

    def publish(self, *args: str, root: Path | None = None, store: Path | None = None) -> str:
        return super().publish("--endpoint-url", self.endpoint, *args, root=root,
                               store=store or "s3://bundles/shop")  # type: ignore[arg-type]

    def s3(self, **options: object) -> Store:
        return Store("s3://bundles/shop", {"s3": {"endpoint_url": self.endpoint}, **options})


@pytest.fixture(scope="module")
def s3world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3World]:
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    port = free_port()
    server = CountingServer(port)
    server.start()
    try:
        import boto3

        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bundles")
        yield S3World(tmp_path_factory.mktemp("pull-s3"), server, endpoint)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_two_hosts_pull_from_s3_and_republishing_sends_only_new_blobs(
        s3world: S3World, tmp_path: Path) -> None:
    assert s3world.pull(tmp_path / "a1", "a1", store=s3world.s3())[0] == 0
    assert s3world.pull(tmp_path / "a2", "a2", store=s3world.s3())[0] == 0
    assert sorted(tree(tmp_path / "a1")) == ["etc/app.ini", "etc/plain.conf",
                                              "hosts/a1/id.conf", "hosts/a1/node.conf"]
    assert "hosts/a2/node.conf" in tree(tmp_path / "a2")
    root = tmp_path / "root"
    shutil.copytree(s3world.root, root)
    (root / "tmpl/_ALL_/etc/plain.conf.j2").write_text("changed\n")
    s3world.server.requests.clear()
    out = s3world.publish(root=root)
    blob_puts = [p for m, p in s3world.server.requests if m == "PUT" and "/blobs/" in p]
    assert " 1 new blob(s)" in out and len(blob_puts) == 1
    code, lines = s3world.pull(tmp_path / "a1", "a1", store=s3world.s3())
    assert code == 0 and "1 put, 0 mode fixed, 0 deleted, 3 unchanged" in lines[-1]
    assert (tmp_path / "a1/etc/plain.conf").read_text() == "changed\n"


def test_a_no_op_pull_costs_the_server_one_get_of_the_manifest(
        s3world: S3World, tmp_path: Path) -> None:
    """1,000 hosts, each with its own record, pull with nothing to do: 1,000
    requests, each a GET of the host's manifest."""
    first = tmp_path / "h0"
    s3world.pull(first, "a1", store=s3world.s3())
    hosts = [first] + [tmp_path / f"h{i}" for i in range(1, 1000)]
    for h in hosts[1:]:
        shutil.copytree(first, h, copy_function=shutil.copy2)
    store = s3world.s3()  # one client for all (each host's own process makes its own)
    s3world.server.requests.clear()
    started = time.monotonic()
    for h in hosts:
        code, lines = s3world.pull(h, "a1", store=store)
        assert code == 0 and "up to date" in lines[-1]
    took = time.monotonic() - started
    assert s3world.server.requests == [("GET", f"/bundles/shop/{A1}")] * len(hosts)
    print(f"1,000 no-op pulls: {took:.2f} s, {took / len(hosts) * 1000:.1f} ms each")


class StopsAfterManifest(Store):
    """A store whose server stops right after the manifest was read."""

    def __init__(self, world: S3World) -> None:
        super().__init__("s3://bundles/shop", {"s3": {"endpoint_url": world.endpoint}, **FAST})
        self.world = world

    def read(self, rel: str) -> bytes | None:
        data = super().read(rel)
        if rel.endswith("manifest.json"):
            self.world.server.stop()
        return data


def test_a_server_that_stops_mid_pull_changes_nothing_and_the_next_pull_repairs(
        s3world: S3World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    try:
        with pytest.raises(SyncError) as err:
            s3world.pull(dest, "a1", store=StopsAfterManifest(s3world))
    finally:  # back, on another port (moto's buckets live in this process)
        s3world.server = CountingServer(free_port())
        s3world.server.start()
        s3world.endpoint = f"http://127.0.0.1:{s3world.server._port}"
    text = str(err.value)
    assert text.startswith("cannot read s3://bundles/shop/blobs/") and "\n" not in text
    assert not dest.exists() or (tree(dest) == {} and not list(dest.rglob("*.facsimile-pull")))
    assert s3world.pull(dest, "a1", store=s3world.s3())[0] == 0 and len(tree(dest)) == 4
