"""The cached Debian root filesystem the process runtime's packages.txt tests build in
(one debootstrap, kept across runs under STCLOUD_TEST_ROOTFS)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes import rootfs

ROOTFS_CACHE = Path(os.environ.get("STCLOUD_TEST_ROOTFS", "/var/tmp/stcloud-rootfs"))
SUITE = "bookworm"  # Python 3.11, the tests' default


def with_cached_rootfs(settings: Settings) -> Settings:
    """`settings` whose root filesystems are the cached ones; skips without a way to get
    one."""
    if not rootfs.is_complete(ROOTFS_CACHE / SUITE) and not rootfs.debootstrap_available():
        pytest.skip("no cached Debian root filesystem and no debootstrap to make one")
    return dataclasses.replace(settings, process_rootfs_dir=ROOTFS_CACHE)
