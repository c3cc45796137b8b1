"""A PNG of the ratios (peer time / ember time, log scale), written beside the JSON."""
from __future__ import annotations

from pathlib import Path

from benchmarks.report import PEER_COLUMNS


def plot(results: list[dict], path: Path) -> str:
    """Draw one group of bars per workload; returns "" or why no plot was written."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): plot skipped"
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    rows = [r for r in results if any(v for v in r["ratios"].values())]
    peers = [p for p in PEER_COLUMNS if any(r["ratios"].get(p) for r in rows)]
    if not rows or not peers:
        return "no ratios to plot"
    height = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) * max(2, len(peers) / 2) + 1.5))
    cmap = plt.get_cmap("tab10")
    for j, peer in enumerate(peers):
        ys, xs = [], []
        for i, r in enumerate(rows):
            v = r["ratios"].get(peer)
            if v:
                ys.append(i + (j - (len(peers) - 1) / 2) * height)
                xs.append(v)
        # Bars grow from 1 (a tie): rightwards where ember is faster, leftwards where not.
        ax.barh(ys, [x - 1 for x in xs], height=height, left=1, color=cmap(j), label=peer)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("peer time / ember time (log scale; right of 1: ember is faster)")
    ax.set_title("ember against its peers, same process, same run")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ""
