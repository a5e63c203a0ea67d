"""In Chromium, against the real supervisor (process runtime) sampling every second: the
Manage app panel and the app's App details page show Memory and CPU, two Altair charts
drawn from the sampler's rows, with the newest figures against the limit; once the app
has stayed above the warning threshold (the operator's 30 % of 128 MiB here: any Streamlit
passes it) the warning box is there too, and its developer's inbox and the outbox hold the
warning. Three hours of earlier samples are added through the model, as the sampler would
have written them, so the charts show hours. With STCLOUD_SCREENSHOTS the panel and the
section are saved for the user guide."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from models import EmailOutbox, Notification, UsageSample, session_scope
from models.resources import InstanceUsageSample
from tests.browser.docs_shots import docs_shot
from tests.support.browser import chromium_path, sign_in
from tests.support.supervisor_harness import wait_until
from tests.support.watch_cloud import TIMEOUT, WatchCloud, open_app, start_watch_cloud

MIB = 1 << 20
CHART = '[data-testid="stVegaLiteChart"]'


@pytest.fixture(scope="module")
def rcloud(tmp_path_factory: pytest.TempPathFactory, shared_envs_dir: Path,
           module_database_url: str) -> Iterator[WatchCloud]:
    chromium_path()
    yield from start_watch_cloud(tmp_path_factory.mktemp("resources"), shared_envs_dir,
                                 module_database_url, {"gauge": "gauge"},
                                 memory_mb={"gauge": 128}, usage_sample_interval=1.0,
                                 memory_warning_percent=30.0, memory_warning_minutes=0.05)


@pytest.fixture
def dev_page(browser: Any, rcloud: WatchCloud) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, rcloud, "dev")
    yield page
    context.close()


def seed_history(cloud: WatchCloud, app_id: int, instance: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    with session_scope(cloud.ctx.engine) as s:
        for i in range(170):
            at = start + timedelta(minutes=i)
            memory = int((62 + 14 * math.sin(i / 14) + i * 0.05) * MIB)
            cpu = 4 + 3 * math.sin(i / 5) + (18 if i % 40 == 7 else 0)
            s.add(UsageSample(app_id=app_id, at=at, memory_bytes=memory,
                              memory_limit_bytes=128 * MIB, cpu_percent=cpu))
            s.add(InstanceUsageSample(app_id=app_id, at=at, instance=instance,
                                      memory_bytes=memory, uss_bytes=memory * 3 // 4,
                                      cpu_percent=cpu))


def count(cloud: WatchCloud, model: Any, *where: Any) -> int:
    with session_scope(cloud.ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def test_panel_and_app_details_show_memory_and_cpu(dev_page: Any, rcloud: WatchCloud) -> None:
    page, app_id = dev_page, rcloud.ids["gauge"]
    # The real sampler: rows for this app, then the warning (above 30 % for 3 s).
    wait_until(lambda: count(rcloud, InstanceUsageSample,
                             InstanceUsageSample.app_id == app_id) >= 2,
               60, "the sampler's first rows", rcloud.supervisor)
    wait_until(lambda: count(rcloud, Notification, Notification.kind == "memory_warning") >= 1,
               60, "the memory warning", rcloud.supervisor)
    assert count(rcloud, EmailOutbox, EmailOutbox.kind == "memory_warning") == 1
    with session_scope(rcloud.ctx.engine) as s:
        real = s.exec(select(InstanceUsageSample).where(
            InstanceUsageSample.app_id == app_id)).first()
    assert real is not None and 30 * MIB < real.memory_bytes < 128 * MIB, real
    seed_history(rcloud, app_id, real.instance)

    open_app(page, rcloud, "gauge")
    page.get_by_role("button", name="Manage app").click()
    frame = page.frame_locator("iframe[title^='Manage app']")
    frame.get_by_text("Memory and CPU").wait_for(timeout=TIMEOUT)
    charts = frame.locator(CHART)
    charts.nth(1).locator("canvas, svg").first.wait_for(timeout=TIMEOUT)
    assert charts.count() == 2
    frame.get_by_text("of its memory limit for over").wait_for(timeout=TIMEOUT)
    frame.get_by_text("MiB of 128 MiB").first.wait_for(timeout=TIMEOUT)
    frame.get_by_text("Memory and CPU").evaluate("e => e.scrollIntoView({block: 'start'})")
    docs_shot(page, "manage-app-resources")

    page.goto(rcloud.url(path=f"/app?app={app_id}"))
    page.get_by_role("heading", name="Memory and CPU").wait_for(timeout=TIMEOUT)
    charts = page.locator(CHART)
    charts.nth(1).locator("canvas, svg").first.wait_for(timeout=TIMEOUT)
    page.get_by_text("of its memory limit for over").wait_for(timeout=TIMEOUT)
    page.get_by_text("CPU", exact=False).first.wait_for(timeout=TIMEOUT)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_role("heading", name="Memory and CPU").evaluate(
        "e => e.scrollIntoView({block: 'start'})")
    docs_shot(page, "app-details-resources")
