"""Resources in sight, the pure parts: PSS/USS from smaps_rollup (a fixture /proc), the
instance's processes from its cgroup, CPU between two readings (an injected clock), the
80 % rule over sample times, and the warning and over-limit emails' figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.analytics.resources import Watch, step
from backend.platform import notifications
from backend.platform.settings_load import load_settings
from models import App
from supervisor.runtimes import smaps
from supervisor.runtimes.base import Usage

ROLLUP = """557fa6fc6000-7ffe469e1000 ---p 00000000 00:00 0                  [rollup]
Rss:              {rss} kB
Pss:              {pss} kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            166 kB
Shared_Clean:       1576 kB
Shared_Dirty:          0 kB
Private_Clean:      {pc} kB
Private_Dirty:      {pd} kB
Referenced:         1728 kB
Anonymous:           112 kB
Swap:                  0 kB
"""
MIB = 1 << 20
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def fake_proc(root: Path, pid: int, rss: int, pss: int, pc: int, pd: int,
              cgroup: str = "", ticks: tuple[int, int] = (0, 0)) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "smaps_rollup").write_text(ROLLUP.format(rss=rss, pss=pss, pc=pc, pd=pd))
    (d / "stat").write_text(f"{pid} (python (odd) name) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 "
                            f"{ticks[0]} {ticks[1]} 0 0 20 0 1 0 1 1 1\n")
    (d / "cgroup").write_text(cgroup)


def test_smaps_rollup_gives_pss_uss_and_rss_in_bytes() -> None:
    m = smaps.parse_smaps_rollup(ROLLUP.format(rss=1728, pss=278, pc=40, pd=112))
    assert m == smaps.Memory(pss=278 * 1024, uss=152 * 1024, rss=1728 * 1024)
    assert smaps.parse_smaps_rollup("") == smaps.Memory()


def test_forked_workers_sum_to_their_pss_not_their_rss(tmp_path: Path) -> None:
    """A parent and 3 forks sharing 200 MiB: RSS 200 MiB each, PSS 50 MiB each."""
    for pid in (10, 11, 12, 13):
        fake_proc(tmp_path, pid, rss=200 * 1024 + 1024, pss=50 * 1024 + 1024, pc=0, pd=1024)
    total = smaps.pids_memory([10, 11, 12, 13, 99], tmp_path)  # 99 has ended
    assert total is not None
    assert total.pss == 204 * MIB and total.uss == 4 * MIB and total.rss == 804 * MIB
    assert smaps.pids_memory([99], tmp_path) is None


def test_a_containers_processes_come_from_its_memory_cgroup(tmp_path: Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    cid = "ab" * 32
    fake_proc(proc, 500, 1, 1, 0, 0, cgroup=f"4:memory:/docker/{cid}\n0::/\n")
    fake_proc(proc, 600, 1, 1, 0, 0, cgroup="4:memory:/\n0::/\n")  # the host's root
    group = cg / "memory" / "docker" / cid
    group.mkdir(parents=True)
    (group / "cgroup.procs").write_text("500\n501\n502\n")
    assert smaps.cgroup_pids(500, cid, proc, cg) == [500, 501, 502]
    assert smaps.cgroup_pids(500, "other-container", proc, cg) == [], \
        "a pid whose cgroup is not the container's is some other process of this host"
    assert smaps.cgroup_pids(600, "", proc, cg) == [], "the root cgroup is the whole host"
    engine = Usage(memory_bytes=7, cpu_percent=12.5)
    assert smaps.container_usage("other", 500, engine, proc, cg) is engine


def test_cpu_percent_is_ticks_over_wall_time_and_never_negative(tmp_path: Path) -> None:
    now = [100.0]
    meter = smaps.CpuMeter(clock=lambda: now[0], proc=tmp_path)
    fake_proc(tmp_path, 7, 1, 1, 0, 0, ticks=(100, 50))
    assert meter.percent("a", [7]) == 0.0  # nothing to compare with yet
    (tmp_path / "7" / "stat").write_text(
        f"7 (x) S 1 7 7 0 -1 0 0 0 0 0 {100 + smaps.TICKS} {50 + smaps.TICKS // 2} 0 0\n")
    now[0] = 102.0
    assert abs(meter.percent("a", [7]) - 75.0) < 0.01  # 1.5 s of CPU in 2 s
    now[0] = 104.0
    assert meter.percent("a", []) == 0.0  # the process ended: its ticks went with it


def run(samples: list[tuple[float, int]], limit: int = 100, minutes: float = 5,
        gap: float = 180) -> list[bool]:
    watch: Watch | None = None
    out = []
    for minute, memory in samples:
        watch, due = step(watch, T0 + timedelta(minutes=minute), memory, limit, 80.0,
                          minutes, gap)
        out.append(due)
    return out


def test_warning_once_after_staying_above_80_percent_for_the_duration() -> None:
    assert run([(m, 85) for m in range(8)]) == [False] * 5 + [True, False, False]
    assert run([(0, 79), (1, 79), (2, 79)]) == [False] * 3
    assert run([(0, 80), (5, 80)], gap=600) == [False, True], "80 % itself counts"


def test_a_dip_a_gap_or_a_new_limit_starts_the_stretch_again() -> None:
    dip = [(0, 90), (1, 90), (2, 90), (3, 70), (4, 90), (5, 90), (8, 90), (9, 90)]
    assert run(dip) == [False] * 7 + [True], "the stretch restarted at minute 4"
    gap = [(0, 90), (2, 90), (10, 90), (12, 90), (15, 90)]
    assert run(gap) == [False] * 4 + [True], "ten minutes without samples: not running"
    watch, _ = step(None, T0, 90, 100, 80.0, 5, 180)
    watch, due = step(watch, T0 + timedelta(minutes=6), 90, 110, 80.0, 5, 600)
    assert watch is not None and watch.above_since == T0 + timedelta(minutes=6) and not due


def test_no_warning_without_a_limit_or_when_turned_off() -> None:
    assert step(None, T0, 10**12, 0, 80.0, 0, 180) == (None, False)
    assert step(None, T0, 99, 100, 0.0, 0, 180) == (None, False)


def test_the_warning_and_over_limit_emails_name_used_and_limit() -> None:
    settings = load_settings({})
    app = App(id=3, subdomain="hungry", workspace_id=1, repo_url="r", branch="main",
              main_file="a.py")
    warn = notifications.render(settings, app, "memory_warning", used_mb="221", limit_mb="256",
                                percent="80", minutes="5")
    assert "221 MiB of 256 MiB" in warn.text and "80 %" in warn.text and "5 minutes" in warn.text
    assert "close to its memory limit" in warn.subject
    over = notifications.render(settings, app, "over_limit", limit_mb="256", used_mb="250",
                                used_minutes="10")
    assert "limit of 256 MiB" in over.text and "was 250 MiB of that 256 MiB limit" in over.text
    assert "250 MiB" in over.html
    bare = notifications.render(settings, app, "over_limit", limit_mb="256")
    assert "highest memory reading" not in bare.text


def test_the_chart_has_a_line_per_instance_and_their_sum_and_cpu() -> None:
    from backend.analytics import resources, usage
    from pages.dashboard import _resources as view

    at = [T0 + timedelta(minutes=m) for m in range(2)]
    series = usage.UsageSeries(1, T0, T0 + timedelta(hours=1), [
        usage.UsagePoint(t, 300 * MIB, 300 * MIB, 400 * MIB, 30.0) for t in at], 400 * MIB,
        False)
    parts = [resources.InstancePoint(t, name, 150 * MIB, 100 * MIB, 15.0)
             for t in at for name in ("a1", "b2")]
    res = resources.Resources(series, parts, None)
    rows = view.memory_rows(res)
    assert {r["series"] for r in rows} == {"All instances", "Instance a1", "Instance b2"}
    total = [r for r in rows if r["series"] == "All instances"]
    assert [(r["memory"], r["uss"], r["limit"]) for r in total] == [(300.0, 200.0, 400)] * 2
    spec = view.memory_chart(res, 80.0).to_dict()
    assert [r["y"] for r in spec["layer"][2]["data"]["values"]] == [400, 320]
    cpu = view.cpu_chart(res).to_dict()
    assert sorted(r["cpu"] for r in cpu["data"]["values"]) == [15.0] * 4 + [30.0] * 2
    assert view.now_caption(res, "running") == \
        "Latest: 300 MiB of 400 MiB (75 %) · CPU 30 % of a core · 2 instances"
    single = resources.Resources(series, [p for p in parts if p.instance == "a1"], None)
    assert {r["series"] for r in view.memory_rows(single)} == {"All instances"}


def test_every_notice_kind_has_its_label_in_the_inbox() -> None:
    """Read from the page's source: importing the page would run it."""
    import ast

    from backend.platform.settings import PROJECT_ROOT
    tree = ast.parse((PROJECT_ROOT / "pages" / "dashboard" / "inbox.py").read_text())
    (labels,) = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "KIND_LABEL"]
    assert set(notifications.KINDS) <= set(labels), set(notifications.KINDS) - set(labels)
