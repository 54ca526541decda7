"""Turn raw per-round records into summaries, a markdown table, JSON and a PNG chart.

Summaries are medians over rounds with the min-max beside them. Ratios to the baseline server
are taken pairwise inside each round (this server's round-3 number over the baseline's round-3
number) and then the median of those ratios is reported, so a round that was slow for every
server does not skew the ratio.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.scenarios import BASELINE, PROTOCOLS
from benchmarks.servers import SERVERS

RESULTS = Path(__file__).resolve().parent / "results"
Row = dict[str, Any]
KeyOf = Callable[[Row], tuple]


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def summarize(
    records: list[Row], key: KeyOf, metrics: list[str], ratios: list[str], baseline_of: Callable[[tuple], str]
) -> list[Row]:
    """One row per (key, server): median/min/max of each metric, median pairwise ratio per ratio metric."""
    ok = [r for r in records if "error" not in r]
    groups: dict[tuple, list[Row]] = {}
    for r in records:
        groups.setdefault((*key(r), r["server"]), [])
    for r in ok:
        groups[(*key(r), r["server"])].append(r)
    rows = []
    for group, members in groups.items():
        *k, server = group
        row: Row = {"key": tuple(k), "server": server, "rounds": len(members)}
        row["failed_requests"] = sum(int(m.get("failed_requests", 0)) for m in members)
        row["failures"] = sorted({str(r["error"]) for r in records if "error" in r and (*key(r), r["server"]) == group})
        for metric in metrics:
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            row[metric], row[f"{metric}_min"], row[f"{metric}_max"] = _spread(values) if values else (None,) * 3
        base = baseline_of(tuple(k))
        row["baseline"] = base
        for metric in ratios:
            pairs = []
            for m in members:
                ref = [b for b in ok if b["server"] == base and key(b) == tuple(k) and b["round"] == m["round"]]
                if ref and m.get(metric) and ref[0].get(metric):
                    pairs.append(float(m[metric]) / float(ref[0][metric]))
            row[f"{metric}_ratio"] = statistics.median(pairs) if pairs else None
        rows.append(row)
    return rows


def _fmt(value: object, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if value is None else f"{format(value, spec)}{suffix}"


def _range(row: Row, metric: str) -> str:
    low, high = row.get(f"{metric}_min"), row.get(f"{metric}_max")
    return "—" if low is None or high is None else f"{_fmt(low)}-{_fmt(high)}"


def _ratio(row: Row, metric: str) -> str:
    value = row.get(f"{metric}_ratio")
    return "—" if value is None else f"{value:.2f}x {row['baseline']}"


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _notes(rows: list[Row]) -> str:
    """Runs that failed, and runs that completed with failed requests: a number is only as good as these."""
    lines = []
    for r in rows:
        where = f"{r['server']} {'/'.join(map(str, r['key']))}"
        if r["failures"]:
            lines.append(f"- {where}: {'; '.join(r['failures'])}")
        if r.get("failed_requests"):
            lines.append(f"- {where}: {r['failed_requests']} failed requests (all rounds together)")
    return ("\n\nFailures and failed requests:\n" + "\n".join(lines)) if lines else ""


def _busy(row: Row) -> str:
    """Median busy share of server CPU / load CPU, and the CPU other processes took (in cores).

    A load CPU near 100% with a server CPU well below marks a load-bound row (its req/s
    understates the server; CPU per request still holds). A server using under 0.8 of its CPU
    while that CPU is not saturated is stalled: it waits on timers, flow-control windows or the
    client, so its req/s says little about its capacity. Other > 0.1 cores marks a noisy row.
    """
    srv, gen, other = row.get("server_cpu_busy"), row.get("load_cpu_busy"), row.get("foreign_cores")
    if srv is None or gen is None:
        return "—"
    share = row.get("server_cpu_share") or 0.0
    checks = (
        ("load-bound", gen >= 0.97 and srv < 0.9),
        ("stalled", share < 0.8 and srv < 0.9),  # neither CPU saturated: the server waits on something
        ("noisy", (other or 0) > 0.1),
    )
    flags = [flag for flag, on in checks if on]
    return f"{srv:.0%}/{gen:.0%} +{other or 0:.2f}" + (f" ({', '.join(flags)})" if flags else "")


def throughput_markdown(rows: list[Row]) -> str:
    lines = [
        [
            str(r["key"][0]),
            str(r["server"]),
            _fmt(r["rps"]),
            _range(r, "rps"),
            _ratio(r, "rps"),
            _fmt(r["p50_ms"], ".2f"),
            _fmt(r["p99_ms"], ".2f"),
            _fmt(r["cpu_us_per_req"], ".1f"),
            _ratio(r, "cpu_us_per_req"),
            _busy(r),
            str(r["rounds"]),
        ]
        for r in rows
    ]
    header = [
        "scenario",
        "server",
        "req/s (median)",
        "min-max",
        "req/s ratio",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "CPU ratio",
        "busy server/load CPU + other cores",
        "rounds",
    ]
    return _table(header, lines) + _notes(rows)


def ramp_markdown(rows: list[Row], bound_ms: float) -> str:
    lines = [
        [
            str(r["key"][0]),
            str(r["server"]),
            _fmt(r["max_rps"]),
            _range(r, "max_rps"),
            _ratio(r, "max_rps"),
            _fmt(r["clients"]),
            _fmt(r["p95_ms"], ".2f"),
            str(r["rounds"]),
        ]
        for r in rows
    ]
    header = [
        "scenario",
        "server",
        f"MaxRPS (p95 ≤ {bound_ms:g} ms)",
        "min-max",
        "ratio",
        "clients",
        "p95 ms there",
        "rounds",
    ]
    return _table(header, lines) + _notes(rows)


def memory_markdown(rows: list[Row]) -> str:
    lines = []
    for r in rows:
        family, count = r["key"]
        what = f"{count:,} idle keep-alive conns" if family == "h1" else f"{count:,} open h2 streams"
        lines.append(
            [
                what,
                str(r["server"]),
                _fmt(r["alive"]),
                _fmt(r["rss"] / 2**20 if r["rss"] else None, ".1f"),
                _fmt(r["base_rss"] / 2**20 if r["base_rss"] else None, ".1f"),
                _fmt(r["per_item"]),
                _ratio(r, "per_item"),
                str(r["rounds"]),
            ]
        )
    header = [
        "load",
        "server",
        "alive",
        "worker RSS MiB",
        "RSS before MiB",
        "bytes per conn/stream",
        "ratio",
        "rounds",
    ]
    return _table(header, lines) + _notes(rows)


def _bars(ax: object, groups: list[str], servers: list[str], value: Callable[[str, str], tuple]) -> None:
    """Grouped bars: one group per label, one bar per server, min-max as error bars."""
    width = 0.8 / max(1, len(servers))
    for i, server in enumerate(servers):
        meds, lows, highs = [], [], []
        for group in groups:
            med, lo, hi = value(group, server)
            meds.append(med or 0)
            lows.append((med - lo) if med is not None and lo is not None else 0)
            highs.append((hi - med) if med is not None and hi is not None else 0)
        xs = [x + i * width - 0.4 + width / 2 for x in range(len(groups))]
        ax.bar(xs, meds, width, label=server, color=_color(server), yerr=[lows, highs], capsize=2)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")


def _figure(panels: int) -> tuple[object, list]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(panels, 1, figsize=(11, 3.6 * panels), squeeze=False)
    return fig, [row[0] for row in axes]


def _save(fig: object, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _servers_of(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(str(r["server"]) for r in rows))


def throughput_chart(rows: list[Row], path: Path) -> None:
    protos = [p for p in PROTOCOLS if any(str(r["key"][0]).endswith(f"-{p}") for r in rows)]
    fig, axes = _figure(len(protos))
    titles = {
        "h1": "HTTP/1.1 keep-alive (wrk)",
        "h1p": "HTTP/1.1 pipelined x10 (wrk)",
        "h2": "HTTP/2 h2c (h2load)",
    }
    for ax, proto in zip(axes, protos, strict=True):
        mine = [r for r in rows if str(r["key"][0]).endswith(f"-{proto}")]
        groups = list(dict.fromkeys(str(r["key"][0]).removesuffix(f"-{proto}") for r in mine))
        index = {(str(r["key"][0]).removesuffix(f"-{proto}"), r["server"]): r for r in mine}

        def value(group: str, server: str, index: dict = index) -> tuple:
            r = index.get((group, server))
            return (r["rps"], r["rps_min"], r["rps_max"]) if r else (None, None, None)

        _bars(ax, groups, _servers_of(mine), value)
        ax.set_title(titles[proto])
        ax.set_ylabel("requests/s (median, min-max)")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def _color(server: str) -> str | None:
    """One color per server in every chart, by its place in the server table."""
    return f"C{list(SERVERS).index(server) % 10}" if server in SERVERS else None


def ramp_chart(records: list[Row], path: Path, bound_ms: float) -> None:
    """req/s against clients per scenario (median over rounds); hollow markers breach the p95 bound."""
    scenarios = list(dict.fromkeys(str(r["scenario"]) for r in records if "steps" in r))
    fig, axes = _figure(max(1, len(scenarios)))
    for ax, scenario in zip(axes, scenarios, strict=False):
        mine = [r for r in records if r["scenario"] == scenario and "steps" in r]
        for server in _servers_of(mine):
            rps: dict[int, list[float]] = {}
            p95: dict[int, list[float]] = {}
            for r in mine:
                if r["server"] == server:
                    for step in r["steps"]:
                        rps.setdefault(int(step["clients"]), []).append(float(step["rps"]))
                        p95.setdefault(int(step["clients"]), []).append(float(step["p95_ms"]))
            xs = sorted(rps)
            ys = [statistics.median(rps[x]) for x in xs]
            color = _color(server)
            ax.plot(xs, ys, marker="o", label=server, color=color)
            late = [(x, y) for x, y in zip(xs, ys, strict=True) if statistics.median(p95[x]) > bound_ms]
            if late:
                ax.scatter(*zip(*late, strict=True), s=70, facecolors="white", edgecolors=color, zorder=3)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{scenario}: req/s by concurrent clients (hollow: p95 > {bound_ms:g} ms)")
        ax.set_xlabel("clients")
        ax.set_ylabel("requests/s")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def memory_chart(rows: list[Row], path: Path) -> None:
    fig, axes = _figure(1)
    keys = list(dict.fromkeys(r["key"] for r in rows))
    labels = [f"{c:,} {'conns' if f == 'h1' else 'h2 streams'}" for f, c in keys]
    index = {(f"{c:,} {'conns' if f == 'h1' else 'h2 streams'}", r["server"]): r for r in rows for f, c in [r["key"]]}

    def value(group: str, server: str) -> tuple:
        r = index.get((group, server))
        return (r["per_item"], r["per_item_min"], r["per_item_max"]) if r else (None, None, None)

    _bars(axes[0], labels, _servers_of(rows), value)
    axes[0].set_title("worker RSS growth per idle connection / open stream")
    axes[0].set_ylabel("bytes (median, min-max)")
    axes[0].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


CHART_MIN_COUNT = 100  # below this, RSS page granularity swamps the per-connection figure
Rendered = tuple[list[Row], str, Callable[[Path], None]]


def _by_scenario(record: Row) -> tuple:
    return (record["scenario"],)


def _scenario_baseline(key: tuple) -> str:
    return BASELINE[str(key[0]).rsplit("-", 1)[1]]


def throughput(records: list[Row]) -> Rendered:
    """Summary rows, markdown table and chart writer for throughput records."""
    metrics = [
        "rps",
        "p50_ms",
        "p99_ms",
        "cpu_us_per_req",
        "server_cpu_share",
        "server_cpu_busy",
        "load_cpu_busy",
        "foreign_cores",
    ]
    rows = summarize(records, _by_scenario, metrics, ["rps", "cpu_us_per_req"], _scenario_baseline)
    return rows, throughput_markdown(rows), lambda path: throughput_chart(rows, path)


def ramp(records: list[Row], bound_ms: float) -> Rendered:
    rows = summarize(records, _by_scenario, ["max_rps", "clients", "p95_ms"], ["max_rps"], _scenario_baseline)
    return rows, ramp_markdown(rows, bound_ms), lambda path: ramp_chart(records, path, bound_ms)


def memory(records: list[Row]) -> Rendered:
    """Rows per (protocol family, count); a failed server keeps one row (count 0) to carry its error."""
    rows = summarize(
        records,
        lambda r: (r["family"], r.get("count", 0)),
        ["alive", "rss", "base_rss", "per_item"],
        ["per_item"],
        lambda key: BASELINE[str(key[0])],
    )
    rows = [r for r in rows if r["key"][1] or r["failures"]]
    return (
        rows,
        memory_markdown(rows),
        lambda path: memory_chart([r for r in rows if r["key"][1] >= CHART_MIN_COUNT], path),
    )


def _tool_version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return "missing"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine() -> dict[str, object]:
    """What the numbers were measured on; without this a table cannot be compared with another."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _tool_version(["wrk", "-v"]),
        "h2load": _tool_version(["h2load", "--version"]),
        "celeris_tree": _tree(),
    }


def _tree() -> str:
    """The celeris commit measured, `+changes` when the work tree differs (read-only git calls)."""
    root = str(Path(__file__).resolve().parent.parent)
    head = _tool_version(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    try:
        dirty = subprocess.run(["git", "-C", root, "diff-index", "--quiet", "HEAD", "--"], timeout=10).returncode
    except (OSError, subprocess.TimeoutExpired):
        return head
    return head + ("+changes" if dirty else "")


def write(
    mode: str,
    meta: dict[str, object],
    records: list[Row],
    rows: list[Row],
    markdown: str,
    chart: Callable[[Path], None],
    publish: bool,
) -> list[Path]:
    """Write `<mode>-<stamp>.{md,json,png}` plus `<mode>-latest.*` copies; optionally the published table.

    Published files are named per Python version (`published-<mode>-py311.md` and `.png`), so the runs
    on different interpreters that the README quotes side by side do not overwrite each other.
    """
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = ", ".join(f"{k}={v}" for k, v in meta["settings"].items())
    head = (
        f"# celeris-asgi benchmark: {mode}\n\n{meta['date']} · {meta['machine']['cpu']} · "
        f"Python {meta['machine']['python']} · celeris tree {meta['machine'].get('celeris_tree', '?')} · servers: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f"\n\nSettings: {settings}. Ratios: HTTP/1.1 rows to {BASELINE['h1']}, HTTP/2 rows to "
        f"{BASELINE['h2']}, pairwise per round, median.\n\n"
    )
    document = head + markdown + "\n"
    payload = {"mode": mode, **meta, "summary": rows, "records": records}
    written = []
    for name in (f"{mode}-{stamp}", f"{mode}-latest"):
        (RESULTS / f"{name}.md").write_text(document)
        (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        written += [RESULTS / f"{name}.md", RESULTS / f"{name}.json"]
    chart_path: Path | None = RESULTS / f"{mode}-{stamp}.png"
    try:
        chart(chart_path)
        (RESULTS / f"{mode}-latest.png").write_bytes(chart_path.read_bytes())
        written.append(chart_path)
    except ImportError:
        print("chart skipped: matplotlib is not installed")
        chart_path = None
    if publish:
        published = RESULTS / f"published-{mode}-py{sys.version_info[0]}{sys.version_info[1]}"
        published.with_suffix(".md").write_text(document)
        written.append(published.with_suffix(".md"))
        if chart_path is not None:
            published.with_suffix(".png").write_bytes(chart_path.read_bytes())
            written.append(published.with_suffix(".png"))
    return written
