"""The Markdown report of bench/proxy.py's results."""

from __future__ import annotations

TARGETS = ("direct", "ours", "nginx", "chp", "ours_qa")
LABELS = {"direct": "direct", "ours": "ours", "nginx": "nginx", "chp": "chp",
          "ours_qa": "ours + QUICKACK (experiment)"}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# Report ---------------------------------------------------------------------------------------
def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def _kib(value: float | None) -> str:
    """A per-session growth; negative means the process reused memory freed earlier."""
    return "n/a (reused freed memory)" if value is not None and value < 0 else _fmt(value)


def markdown(r: dict) -> str:
    http = r["http"]
    lines = ["| load | direct | ours | ours/direct | target | nginx (÷direct) "
             "| chp (÷direct) | ours + QUICKACK, experiment (÷direct) |",
             "|---|---|---|---|---|---|---|---|"]

    def row(label: str, load: str, key: str, unit: str, target: str = "",
            better_high: bool = True, digits: int = 1) -> None:
        data = http.get(load, {})
        direct = data.get("direct", {}).get(key)
        ours = data.get("ours", {}).get(key)
        q = ratio(ours, direct)
        verdict = ""
        if target and q is not None:
            ok = q >= 1.0 if better_high else q <= 1.0
            verdict = f"{target} {'met' if ok else '**not met**'}"
        refs = []
        for ref in ("nginx", "chp", "ours_qa"):
            v = data.get(ref, {}).get(key)
            refs.append("missing" if ref not in data else
                        f"{_fmt(v, unit, digits)} ({_fmt(ratio(v, direct), '×', 2)})")
        lines.append(f"| {label} | {_fmt(direct, unit, digits)} | {_fmt(ours, unit, digits)} "
                     f"| {_fmt(q, '×', 2)} | {verdict} | {' | '.join(refs)} |")

    c = http.get("index", {}).get("connections", 32)
    row(f"index ({r['paths']['index_bytes'] / 1000:.1f} KB), {c} conns: req/s", "index", "rps",
        "", "≥ 1.0×")
    row(f"index, {c} conns: p50", "index", "p50_ms", " ms", "≤ 1.0×", better_high=False,
        digits=2)
    row(f"index, {c} conns: p99", "index", "p99_ms", " ms", digits=2)
    kb = r.get("paths", {}).get("bundle_bytes", 0) / 1000
    row(f"JS bundle ({kb:.0f} KB), 8 conns: req/s", "bundle", "rps", "")
    row("JS bundle, 8 conns: p50", "bundle", "p50_ms", " ms", digits=2)
    row("`/_stcore/health`, 1 conn: p50", "health", "p50_ms", " ms", digits=2)
    for label, key in (("Streamlit", "streamlit_cpu_pct"), ("proxy", "proxy_cpu_pct")):
        data = http.get("index", {})
        cells = {t: (_fmt(data.get(t, {}).get(key), " %", 0) if t in data else "missing")
                 for t in TARGETS}
        lines.append(f"| index: {label} CPU (% of one core) | {cells['direct']} | "
                     f"{cells['ours']} | | | {cells['nginx']} | {cells['chp']} | "
                     f"{cells['ours_qa']} |")
    errors = {t: v.get("socket_errors", 0) + v.get("non_2xx", 0)
              for load in ("index", "bundle", "health")
              for t, v in http.get(load, {}).items() if isinstance(v, dict) and "rps" in v}
    out = "\n".join(lines)
    halves = http.get("index", {}).get("direct", {}).get("halves") or []
    out += ("\n\nIndex: two 5 s halves per target (order, then reverse order), figures are "
            "their mean; direct's halves: "
            + ", ".join(f"{h['rps']:.0f} req/s" for h in halves)
            + f". wrk socket errors + non-2xx responses, all runs: {sum(errors.values())}.")

    ws = ["", "", "| websocket, p50 / p99 | direct | ours | ours/direct p50 "
          "| ours + QUICKACK (÷direct p50) |", "|---|---|---|---|---|"]
    for label, key, sub in (("rerun BackMsg → script_finished, held session", "ws",
                             "roundtrip"),
                            ("fresh session: open → first script_finished", "ws",
                             "fresh_session"),
                            ("64 B echo, aiohttp echo upstream", "ws_echo", "roundtrip")):
        d = r.get(key, {}).get("direct", {}).get(sub, {})
        o = r.get(key, {}).get("ours", {}).get(sub, {})
        qa = r.get(key, {}).get("ours_qa", {}).get(sub, {})

        def pair(x: dict) -> str:
            return f"{_fmt(x.get('p50_ms'), ' ms', 2)} / {_fmt(x.get('p99_ms'), ' ms', 2)}"
        ws.append(f"| {label} (n={o.get('n', 0)}) | {pair(d)} | {pair(o)} | "
                  f"{_fmt(ratio(o.get('p50_ms'), d.get('p50_ms')), '×', 2)} | {pair(qa)} "
                  f"({_fmt(ratio(qa.get('p50_ms'), d.get('p50_ms')), '×', 2)}) |")
    out += "\n".join(ws)

    cc = ["", "", "| concurrent websockets | target | alive after hold | ramp (sessions/s) "
          "| probes answered (p50) | proxy RSS before → held | proxy KiB / socket pair "
          "| upstream KiB / session |", "|---|---|---|---|---|---|---|---|"]
    for label, key in (("Streamlit sessions direct (clean Streamlit)", "streamlit_direct"),
                       ("Streamlit sessions via ours", "streamlit_ours"),
                       ("idle echo websockets via ours (fresh proxy)", "echo_ours"),
                       ("idle echo websockets via ours, soft RLIMIT_NOFILE 1024",
                        "echo_ours_nofile_1024")):
        x = r.get("concurrency", {}).get(key)
        if not x:
            continue
        p = x["baseline"].get("proxy"), x["held"].get("proxy")
        rss = (f"{p[0]['rss_kib'] / 1024:.1f} → {p[1]['rss_kib'] / 1024:.1f} MiB"
               if p[0] else "–")
        rate = x["first_answer"] / x["time_to_all_s"] if x.get("time_to_all_s") else None
        cc.append(f"| {label} | {x['target']} | {x['alive_after_hold']} | "
                  f"{x['ramp_s']:.1f} s ({_fmt(rate, '/s', 0)}) | {x['probes_answered']} "
                  f"({_fmt(x['probe'].get('p50_ms'), ' ms', 1)}) | {rss} | "
                  f"{_fmt(x.get('proxy_kib_per_session'))} | "
                  f"{_kib(x.get('upstream_kib_per_session'))} |")
    out += "\n".join(cc)
    m = r["machine"]
    out += (f"\n\n{m['cpus']} CPUs, load average {m['loadavg_start']:.2f} at start, "
            f"{m.get('loadavg_end', 0):.2f} at end.")
    if r.get("missing"):
        out += "\nMissing references: " + "; ".join(r["missing"])
    return out

