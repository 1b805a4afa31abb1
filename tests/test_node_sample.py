"""The Node sample (node:http on fd 3) under oxtui: shared port, lossless rolling reload."""

from __future__ import annotations

import shutil

import pytest
from conftest import ROOT, free_port, under_load, wait_until, write_oxfile
from load import Load

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


@under_load
def test_node_instances_share_the_port_and_reload_without_loss(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.api]
        command = "node {ROOT / 'sample_apps' / 'server.js'}"
        instances = 2
        listen = "127.0.0.1:{port}"
        [processes.api.ready]
        log = "listening on"
        http = "/health"
        timeout = 15
    '''))
    pids = {w["pid"] for w in ep.wait_running("api", 2)}
    with Load(port) as load:
        load.wait_for(100)
        # Both answer on the one port. Waited for, not read off a fixed window of 100 requests: on a busy
        # 2-core machine one instance can be off the CPU for that long (seen once in a full run).
        wait_until(lambda: {int(b.split()[3]) for b in list(load.bodies)} >= pids, 10, 0.05,
                   what=f"both node instances {sorted(pids)} answering on the one port")
        assert {int(b.split()[3]) for b in list(load.bodies)} == pids, "only the two instances answer"
        r = ep.cli("reload", "api")
        assert r.returncode == 0, r.stdout + r.stderr
        load.wait_for(100)
    assert load.failures == [], load.failures[:5]
    assert not ({w["pid"] for w in ep.wait_running("api", 2)} & pids)
    assert "drained, bye" in ep.output()
