"""The scripts' pictures (`bench.py --plot`, `chaos.py --plot`, `soak.py --plot`), with
matplotlib: the optional `plot` extra (pip install -e '.[plot]')."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any


def require_matplotlib(parser: argparse.ArgumentParser, path: str | None) -> None:
    """Refuse ``--plot`` up front (before any run) when it cannot be honoured."""
    if path is None:
        return
    if not path.lower().endswith(".png"):
        parser.error(f"--plot {path}: name a .png file")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.error("--plot needs matplotlib: pip install -e '.[plot]'")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bench_plot(report: dict[str, Any], path: str) -> None:
    """Sagas/s and p50 of every row, one bar per concurrency, from one bench run."""
    plt = _pyplot()
    by_label = {(f"{r['name']} ({r['mix']})", r["concurrency"]): r
                for r in report["rows"] if r.get("sagas_per_s")}
    names = list(dict.fromkeys(name for name, _ in by_label))
    levels = sorted({level for _, level in by_label})
    width = 0.8 / len(levels)
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for k, level in enumerate(levels):
        at = [(i, by_label[name, level]) for i, name in enumerate(names)
              if (name, level) in by_label]
        for ax, field in zip(axes, ("sagas_per_s", "p50_ms"), strict=True):
            ax.bar([i - 0.4 + width * (k + 0.5) for i, _ in at], [r[field] for _, r in at],
                   width, label=f"{level} in flight")
    axes[0].set_ylabel("sagas / s")
    axes[1].set_ylabel("p50 latency (ms)")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    m = report.get("machine", {})
    axes[0].set_title(f"saga_actors bench: one run, {m.get('cpus', '?')} CPUs, "
                      f"Ray {m.get('ray', '?')} (log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def chaos_plot(faults: list[tuple[float, str]], sagas: list[tuple[float, float | None, str]],
               start: float, path: str, title: str) -> None:
    """The sagas started and ended over time (by final status), above the faults injected
    when they were (one row of marks per kind)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    started = sorted(c - start for c, _, _ in sagas)
    top.step(started, range(1, len(started) + 1), where="post", label="started", color="grey")
    by_status: dict[str, list[float]] = defaultdict(list)
    for _, finished, status in sagas:
        if finished is not None:
            by_status[status].append(finished - start)
    colours = {"COMPLETED": "tab:green", "FAILED": "tab:red", "STUCK": "tab:purple"}
    for status, times in sorted(by_status.items()):
        times.sort()
        top.step(times, range(1, len(times) + 1), where="post",
                 label=f"{status} ({len(times)})", color=colours.get(status))
    top.set_ylabel("sagas")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    top.set_title(title)
    kinds = sorted({k for _, k in faults})
    for i, kind in enumerate(kinds):
        xs = [t - start for t, k in faults if k == kind]
        bottom.scatter(xs, [i] * len(xs), marker="|" if kind.startswith("kill") else "x", s=120,
                       color="black" if kind == "ray_restart" else None)
    bottom.set_yticks(range(len(kinds)), kinds, fontsize=8)
    bottom.set_xlabel("seconds since the run began")
    bottom.set_ylabel("faults injected")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def soak_plot(series: dict[str, list[tuple[int, float]]], path: str, sagas: int) -> None:
    """Resident memory of every process against sagas ended."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, points in sorted(series.items()):
        ax.plot([x for x, _ in points], [y for _, y in points], label=name, linewidth=1.2)
    ax.set_xlabel("sagas ended")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title(f"saga_actors soak: {sagas:,} hosted sagas through the same actors")
    ax.axvline(sagas / 2, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
