"""On Docker, an instance's memory is the PSS of the processes of the container's cgroup,
read from this host's /proc: a container whose Python touches 120 MiB and forks two
workers sharing those pages uses about 120 MiB, while its processes' RSS add up to about
three times that. A pid whose cgroup does not name the container is not taken for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.runtimes import docker_available, smaps
from supervisor.runtimes.base import Usage
from tests.conftest import require_docker

pytestmark = pytest.mark.no_database
MIB = 1 << 20
IMAGE = "stcloud-base:py3.11"
FORKER = r'''
import os, sys, time
buffer = bytearray(120 << 20)
for i in range(0, len(buffer), 4096):
    buffer[i] = 1
for _ in range(2):
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
print("ready", flush=True)
time.sleep(300)
'''


@pytest.fixture
def container() -> Iterator[Any]:
    if not docker_available():
        if require_docker():
            pytest.fail("REQUIRE_DOCKER=1 but no Docker daemon answers")
        pytest.skip("no Docker daemon")
    import docker
    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"no {IMAGE} image (the Docker tests build it)")
    found = client.containers.run(IMAGE, ["python3", "-c", FORKER], detach=True,
                                  labels={"stcloud.test": "pss"})
    try:
        for line in found.logs(stream=True, follow=True):
            if b"ready" in line:
                break
        found.reload()
        yield found
    finally:
        found.remove(force=True)


def test_container_memory_is_the_pss_of_its_cgroup(container: Any) -> None:
    pid = int(container.attrs["State"]["Pid"])
    pids = smaps.cgroup_pids(pid, container.id)
    assert len(pids) >= 3, pids  # python and its two forks
    rss = sum(m.rss for m in (smaps.process_memory(p) for p in pids) if m is not None)
    engine = Usage(memory_bytes=1, cpu_percent=2.5)
    found = smaps.container_usage(container.id, pid, engine)
    assert found is not None and found is not engine
    assert 110 * MIB < found.memory_bytes < 200 * MIB, found
    assert rss > 330 * MIB, f"the forks did not share pages: rss sum {rss >> 20} MiB"
    assert found.uss_bytes is not None and found.uss_bytes < found.memory_bytes
    assert found.cpu_percent == 2.5 and [i.name for i in found.instances] == [container.id[:12]]
    assert smaps.container_usage("0" * 64, pid, engine) is engine
