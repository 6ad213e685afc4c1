#!/usr/bin/env python3
"""Pictures for perf/RESULTS.md, from a run's results.json and .hgrm files.

  latency_<scenario>.png  latency percentile curves (HdrHistogram style: the x axis is
                          1/(1-percentile) on a log scale, so 90%, 99%, 99.9% ... are
                          evenly spaced), one colour per server; the run with the median
                          figure is drawn bold, the other repetitions thin.
  throughput.png          median throughput bars with min-max whiskers: (a), (c), (d), (f).
  pingpong_memory.png     (b) ping-pong median round trip and (e) memory per idle connection.

Run by perf/runner.py with perf/.venv/bin/python (matplotlib). Prints every file it
wrote, one a line.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

COLORS = {
    "gateway": "#d62728",
    "gateway-epoll": "#d62728",
    "gateway-poll": "#ff9f1c",
    "nio": "#1f77b4",
    "c": "#2ca02c",
}
LABELS = {
    "gateway": "gateway",
    "gateway-epoll": "gateway --poller epoll",
    "gateway-poll": "gateway --poller poll",
    "nio": "SwiftNIO",
    "c": "C epoll",
}
TITLES = {
    "a": "(a) 32 conns x 16 in flight x 512 B (closed loop)",
    "b": "(b) ping-pong, 1 conn, 64 B",
    "c": "(c) 1,000 conns x 1 in flight x 64 B",
    "d": "(d) connection rate: connect + echo + close",
    "f": "(f) aggregation tier: 8 conns x 64 in flight x 1 KiB",
    "g": "(g) open loop at half the gateway's peak rate",
}


def read_hgrm(path: str) -> list[tuple[float, float]]:
    """(value, percentile 0..1) pairs; plain-text or CSV percentile output."""
    points = []
    for line in Path(path).read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line[0].isalpha() or line.startswith('"'):
            continue
        fields = line.replace(",", " ").split()
        try:
            value, pct = float(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            continue
        if pct > 1.0:  # written as 0..100
            pct /= 100.0
        points.append((value, pct))
    return points


def unit_scale(points: list[tuple[float, float]], p50_json: float | None) -> float:
    """Factor that turns .hgrm values into microseconds, checked against the JSON p50."""
    if not points or not p50_json:
        return 1.0
    near = min(points, key=lambda vp: abs(vp[1] - 0.5))[0]
    if near <= 0:
        return 1.0
    r = p50_json / near
    for scale in (1.0, 1e-3, 1e3, 1e-6):
        if 0.3 < r / scale < 3.0:
            return scale
    return 1.0


def median_run(runs: list[dict], metric: str) -> dict | None:
    with_metric = [r for r in runs if metric in r["metrics"]]
    if not with_metric:
        return runs[0] if runs else None
    ordered = sorted(with_metric, key=lambda r: r["metrics"][metric])
    return ordered[(len(ordered) - 1) // 2]


def pct_label(x: float, _pos=None) -> str:
    p = 1.0 - 1.0 / x
    s = f"{p * 100:.4f}".rstrip("0").rstrip(".")
    return s + "%"


def latency_figure(key: str, runs: list[dict], out_dir: Path) -> Path | None:
    by_server: dict[str, list[dict]] = {}
    for r in runs:
        if r["scenario"] == key and r["ok"] and r.get("hgrm") and Path(r["hgrm"]).exists():
            by_server.setdefault(r["server"], []).append(r)
    if not by_server:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    xmax = 10.0
    for server, rr in by_server.items():
        best = median_run(rr, "p50_us")
        for r in rr:
            pts = read_hgrm(r["hgrm"])
            scale = unit_scale(pts, r["metrics"].get("p50_us"))
            xs, ys = [], []
            for value, pct in pts:
                if pct >= 1.0:
                    continue
                xs.append(1.0 / (1.0 - pct))
                ys.append(max(value * scale, 0.1))
            if not xs:
                continue
            xmax = max(xmax, max(xs))
            bold = r is best
            ax.plot(xs, ys, color=COLORS.get(server, "gray"), linewidth=2.2 if bold else 0.8,
                    alpha=1.0 if bold else 0.35,
                    label=f"{LABELS.get(server, server)} (p50 {r['metrics'].get('p50_us', float('nan')):,.0f} µs)"
                    if bold else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    decades = max(1, math.ceil(math.log10(xmax)))
    ticks = [10.0 ** k for k in range(0, decades + 1)]
    ticks = [1.0, 2.0] + ticks[1:]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(pct_label))
    ax.set_xlim(1.0, 10.0 ** decades)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y:,.0f}" if y >= 1 else f"{y:g}"))
    ax.set_xlabel("percentile (log scale of 1/(1-percentile))")
    ax.set_ylabel("latency, µs (log scale)")
    ax.set_title(f"Latency by percentile: {TITLES.get(key, key)}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    fig.text(0.99, 0.01, "bold: the run with the median p50; thin: the other repetitions",
             ha="right", fontsize=7, color="gray")
    fig.tight_layout()
    path = out_dir / f"latency_{key}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def bar_panel(ax, key: str, metric: str, runs: list[dict], servers: list[str], ylabel: str,
              fmt: str = "{:,.0f}") -> bool:
    names, meds, los, his, colors = [], [], [], [], []
    for s in servers:
        vals = [r["metrics"][metric] for r in runs
                if r["scenario"] == key and r["server"] == s and r["ok"] and metric in r["metrics"]]
        if not vals:
            continue
        m = statistics.median(vals)
        names.append(LABELS.get(s, s))
        meds.append(m)
        los.append(m - min(vals))
        his.append(max(vals) - m)
        colors.append(COLORS.get(s, "gray"))
    if not names:
        ax.set_visible(False)
        return False
    xs = range(len(names))
    ax.bar(xs, meds, color=colors, yerr=[los, his], capsize=6, edgecolor="black", linewidth=0.5)
    for x, m, h in zip(xs, meds, his):
        ax.text(x, m + h, fmt.format(m), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(TITLES.get(key, key) if key != "e" else "(e) 10,000 idle connections", fontsize=10)
    ax.set_ylim(0, max(m + h for m, h in zip(meds, his)) * 1.18)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y:,.0f}" if y >= 10 else f"{y:g}"))
    ax.grid(True, axis="y", alpha=0.3)
    return True


def throughput_figure(runs: list[dict], out_dir: Path) -> Path | None:
    panels = [
        ("a", "replies_per_s", ["gateway", "nio", "c"], "replies / s"),
        ("c", "replies_per_s", ["gateway", "nio", "c"], "replies / s"),
        ("d", "connections_per_s", ["gateway", "nio", "c"], "connections / s"),
        ("f", "replies_per_s", ["gateway-epoll", "gateway-poll"], "replies / s"),
    ]
    present = [p for p in panels if any(r["scenario"] == p[0] and r["ok"] for r in runs)]
    if not present:
        return None
    cols = 2
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 4.6 * rows), dpi=110, squeeze=False)
    for ax, (key, metric, servers, ylabel) in zip(axes.flat, present):
        bar_panel(ax, key, metric, runs, servers, ylabel)
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    fig.suptitle("Throughput: median of the repetitions, whiskers min-max", fontsize=12)
    fig.tight_layout()
    path = out_dir / "throughput.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def pingpong_memory_figure(runs: list[dict], out_dir: Path) -> Path | None:
    have_b = any(r["scenario"] == "b" and r["ok"] for r in runs)
    have_e = any(r["scenario"] == "e" and r["ok"] for r in runs)
    if not (have_b or have_e):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    if have_b:
        bar_panel(axes[0], "b", "p50_us", runs, ["gateway", "nio", "c"],
                  "median round trip (p50), µs", "{:,.1f}")
    else:
        axes[0].set_visible(False)
    if have_e:
        bar_panel(axes[1], "e", "kib_per_conn", runs, ["gateway", "nio", "c"],
                  "server RSS per idle connection, KiB", "{:,.2f}")
    else:
        axes[1].set_visible(False)
    fig.suptitle("Lower is better: median of the repetitions, whiskers min-max", fontsize=12)
    fig.tight_layout()
    path = out_dir / "pingpong_memory.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    data = json.loads(Path(args.results).read_text())
    runs = data["runs"]
    out_dir = Path(args.out_dir)
    # Pictures of an earlier run that this one does not redraw would be stale.
    for old in list(out_dir.glob("latency_*.png")) + [out_dir / "throughput.png", out_dir / "pingpong_memory.png"]:
        old.unlink(missing_ok=True)
    written = [throughput_figure(runs, out_dir), pingpong_memory_figure(runs, out_dir)]
    for key in ("a", "b", "c", "d", "f", "g"):
        written.append(latency_figure(key, runs, out_dir))
    for p in written:
        if p is not None:
            print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
