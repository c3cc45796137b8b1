"""Pictures of an IR graph: nodes by op, shapes on the edges, fused kernels as clusters.

``graph_svg(graph)`` draws the graph before fusion (nodes colored by the kind of op);
``graph_svg(graph, kernels)`` draws it after fusion: every kernel gets a color and its
nodes a cluster. Graphviz ``dot`` lays the picture out when it is installed; otherwise
a pure-Python layout (layers from ``nx.topological_generations``) writes the SVG, so a
picture is always possible.

>>> report = ember.explain(lambda x: (x * 2).exp().sum(), ember.randn(4, 8))
>>> g = report.graphs[0]
>>> open("after.svg", "w").write(graph_svg(g.graph, g.kernels, title="after fusion"))
"""
from __future__ import annotations

import shutil
import subprocess
import warnings
from html import escape

import networkx as nx

from ember.ir.graph import Graph
from ember.ops.registry import OPS

# ColorBrewer Set3 (without its grey): light enough to read black text on.
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69",
           "#fccde5", "#bc80bd", "#ccebc5", "#ffed6f")
FILL = {"input": "#ffffff", "const": "#f2f2f2", "eager": "#dddddd", "extern": "#ffd8a8",
        "elementwise": "#dbe9f6", "reduce": "#fde0c5", "movement": "#ececec", "other": "#e6e6e6"}
DOT_TIMEOUT_S = 30

# Fallback layout metrics (px): monospace text makes widths predictable.
_FONT = 11
_CHAR_W = 6.7
_NODE_H = 34
_GAP_X = 28
_GAP_Y = 56
_MARGIN = 24
_PAD = 9


def have_dot() -> bool:
    """True if Graphviz ``dot`` is on the PATH."""
    return shutil.which("dot") is not None


def graph_svg(graph: Graph, kernels: list | None = None, *, title: str = "",
              engine: str = "auto") -> str:
    """The graph as an SVG document (``engine``: "auto", "dot" or "python")."""
    if engine not in ("auto", "dot", "python"):
        raise ValueError(f"graph_svg: unknown engine {engine!r} (auto, dot, python)")
    if engine == "dot" or (engine == "auto" and have_dot()):
        try:
            return _run_dot(graph_dot(graph, kernels, title=title))
        except (OSError, subprocess.SubprocessError) as e:
            if engine == "dot":
                raise
            warnings.warn(f"ember: Graphviz dot failed ({e}); drawing in Python instead",
                          stacklevel=2)
    return _python_svg(graph, kernels, title)


def graph_dot(graph: Graph, kernels: list | None = None, *, title: str = "") -> str:
    """The graph in Graphviz DOT: fused kernels are ``cluster_`` subgraphs."""
    style = _Style(graph, kernels)
    lines = ["digraph ember {",
             f'  graph [rankdir=TB, fontname="Helvetica", fontsize=12, labelloc=t, '
             f'label="{_dq(title)}", nodesep=0.25, ranksep=0.45];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
             'margin="0.08,0.03", height=0.3];',
             '  edge [fontname="Helvetica", fontsize=8, color="#666666", fontcolor="#444444"];']
    for ci, (label, color, members) in enumerate(style.clusters):
        lines.append(f"  subgraph cluster_{ci} {{")
        lines.append(f'    label="{_dq(label)}"; style="rounded,filled"; color="{color}"; '
                     f'fillcolor="{color}55"; fontsize=10;')
        lines.extend(f"    n{n};" for n in members)
        lines.append("  }")
    for n in graph.nodes():
        lines.append(f'  n{n} [label="{_dq(chr(10).join(style.label(n)))}", '
                     f'fillcolor="{style.fill(n)}", tooltip="{_dq(graph.node_str(n))}"];')
    for a, b, count in _edges(graph):
        lab = graph.type_str(a) + (f" x{count}" if count > 1 else "")
        lines.append(f'  n{a} -> n{b} [label="{_dq(lab)}"];')
    lines.append("}")
    return "\n".join(lines)


# ---- colors and labels, shared by both engines ---------------------------------------------

class _Style:
    def __init__(self, graph, kernels: list | None) -> None:
        self.graph = graph
        self.kernel_of: dict[int, int] = {}
        self.kernels = list(kernels or [])
        self.clusters: list[tuple[str, str, list[int]]] = []
        self.color_of: dict[int, str] = {}
        k_color = 0
        for i, k in enumerate(self.kernels):
            members = [n for n in k.nodes if n in graph]
            for n in members:
                self.kernel_of[n] = i
            if not _is_group(k):
                continue
            color = PALETTE[k_color % len(PALETTE)]
            k_color += 1
            self.color_of[i] = color
            self.clusters.append((f"{k.name} ({k.backend})", color, members))

    def fill(self, n: int) -> str:
        op = self.graph[n].op
        if op in ("input", "const"):
            return FILL[op]
        i = self.kernel_of.get(n)
        if i is not None:
            return self.color_of.get(i) or FILL.get(self.kernels[i].backend, FILL["eager"])
        if self.kernels:  # after fusion, a node no kernel lists
            return FILL["other"]
        return FILL.get(_kind(op), FILL["other"])

    def label(self, n: int) -> list[str]:
        d = self.graph[n]
        if d.op == "input":
            head = f"%{n} input {d.attrs.get('path', '')}"
        elif d.op == "const":
            v = self.graph.consts.get(n)
            head = f"%{n} const" + (f" {v.item():g}" if v is not None and v.size == 1
                                    and v.dtype.kind in "fiub" else "")
        else:
            head = f"%{n} {d.op}"
        src = d.src or ""
        return [head, _short_src(src)] if src else [head]


def _is_group(k) -> bool:
    """A fused group (a generated kernel, a matmul with its epilogue kernel, or a group
    that fell back), not a single eager op."""
    return (k.backend in ("llvm", "cuda") or not k.name.startswith("%")
            or getattr(k, "kernel", None) is not None)


def _kind(op: str) -> str:
    if op == "matmul":
        return "extern"
    kind = OPS[op].kind if op in OPS else ""
    if OPS.get(op) is not None and OPS[op].elementwise:
        return "elementwise"
    return kind if kind in ("reduce", "movement") else "other"


def _edges(graph):
    """(producer, user, how many operands) per connected pair: ``x + x`` draws once."""
    counts: dict[tuple[int, int], int] = {}
    for a, b in graph.edges():
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return [(a, b, c) for (a, b), c in sorted(counts.items())]


def _short_src(src: str) -> str:
    import os
    path, _, line = src.rpartition(":")
    return f"{os.path.basename(path)}:{line}"


def _dq(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _run_dot(dot_text: str) -> str:
    done = subprocess.run([shutil.which("dot") or "dot", "-Tsvg"], input=dot_text,
                          capture_output=True, text=True, timeout=DOT_TIMEOUT_S, check=True)
    svg = done.stdout
    # Drop the XML prolog and DOCTYPE: the SVG is also inlined into HTML reports.
    return svg[svg.index("<svg"):]


# ---- the pure-Python fallback ---------------------------------------------------------------
#
# Each kernel is a block (its members laid out in their own layers inside it); every other
# node is a block of one. Blocks are layered by longest path over the graph of blocks (it
# is acyclic: fusion never makes a cycle between kernels), so clusters never overlap and
# hold only their own nodes. Within a layer, blocks sit in the order of their
# predecessors' mean x, which keeps most edges short.

def _python_svg(graph, kernels: list | None, title: str) -> str:
    style = _Style(graph, kernels)
    pos, route = _layout(graph, style)   # boxes (x, y of the top, width); long-edge bends
    xs = [x for x, _, _ in pos.values()] + [x + w for x, _, w in pos.values()]
    xs += [x for points in route.values() for x, _ in points]
    shift = _MARGIN + _PAD - min(xs, default=0)
    top = _MARGIN + (22 if title else 0)
    pos = {n: (x + shift, y + top, w) for n, (x, y, w) in pos.items()}
    route = {e: [(x + shift, y + top) for x, y in points] for e, points in route.items()}
    total_w = max(xs, default=0) - min(xs, default=0) + 2 * (_MARGIN + _PAD)
    total_h = max((y for _, y, _ in pos.values()), default=top) + _NODE_H + _PAD + _MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" '
           f'height="{total_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h:.0f}" '
           f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{_FONT}">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           'fill="#666666"/></marker></defs>',
           '<rect width="100%" height="100%" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{_MARGIN}" y="{_MARGIN + 8}" font-size="13" '
                   f'font-weight="bold">{escape(title)}</text>')
    for label, color, members in style.clusters:
        x0 = min(pos[n][0] for n in members) - _PAD
        x1 = max(pos[n][0] + pos[n][2] for n in members) + _PAD
        y0 = min(pos[n][1] for n in members) - _PAD - _LABEL_H
        y1 = max(pos[n][1] for n in members) + _NODE_H + _PAD
        out.append(f'<g class="cluster"><rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
                   f'height="{y1 - y0:.1f}" rx="8" fill="{color}" fill-opacity="0.35" '
                   f'stroke="{color}" stroke-width="2"/><text x="{x0 + 6:.1f}" '
                   f'y="{y0 + 12:.1f}" font-size="10" font-weight="bold">{escape(label)}'
                   '</text></g>')
    for a, b, count in _edges(graph):
        xa, ya, wa = pos[a]
        xb, yb, wb = pos[b]
        points = [(xa + wa / 2, ya + _NODE_H), *route.get((a, b), []), (xb + wb / 2, yb)]
        d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for i in range(1, len(points)):
            (x1, y1), (x2, y2) = points[i - 1], points[i]
            if i % 2:  # a gap between layers: a smooth S-curve
                bend = max(12.0, (y2 - y1) / 2)
                d += f" C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
            else:      # straight down through a crossed layer
                d += f" L{x2:.1f},{y2:.1f}"
        # A value with several users labels each edge near its user, where they part.
        fan_out = len(set(graph.users(a))) > 1
        (x1, y1), (x2, y2) = points[-2:] if fan_out else points[:2]
        lab = graph.type_str(a) + (f" x{count}" if count > 1 else "")
        # Labels sit on the outer side of their edge, so two edges meeting keep theirs apart.
        left = x1 < x2 - 1
        tx = (x1 + x2) / 2 + (-4 if left else 4)
        out.append(f'<g class="edge"><path d="{d}" fill="none" stroke="#666666" '
                   f'marker-end="url(#arrow)"/><text x="{tx:.1f}" y="{(y1 + y2) / 2 + 3:.1f}" '
                   f'text-anchor="{"end" if left else "start"}" font-size="9" fill="#444444" '
                   f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(lab)}'
                   '</text></g>')
    for n in graph.nodes():
        x, y, w = pos[n]
        lines = style.label(n)
        out.append(f'<g class="node" id="n{n}"><title>{escape(graph.node_str(n))}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{_NODE_H}" rx="5" '
                   f'fill="{style.fill(n)}" stroke="#333333"/>')
        for i, t in enumerate(lines):
            ty = y + (_NODE_H / 2 + 4 if len(lines) == 1 else 14 + 12 * i)
            attrs = ' fill="#555555" font-size="9"' if i else ""
            out.append(f'<text x="{x + w / 2:.1f}" y="{ty:.1f}" text-anchor="middle"{attrs}>'
                       f'{escape(t)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


_LABEL_H = 14     # a cluster's title above its first row


def _layout(graph, style: _Style):
    """Node boxes {node: (x, y, width)} and the bend points of long edges {(a, b): [...]}.

    x is centred on 0 in every layer, y grows down from 0. An edge that skips layers gets
    a slot in each layer it crosses (a dummy node, as in Sugiyama's method), so it runs
    beside the nodes of those layers instead of through them.
    """
    width = {n: max(len(t) for t in style.label(n)) * _CHAR_W + 2 * _PAD for n in graph.nodes()}
    unit_of = {n: ("k", style.kernel_of[n]) if style.kernel_of.get(n) in style.color_of
               else ("n", n) for n in graph.nodes()}
    units: dict = {}
    for n in graph.nodes():
        units.setdefault(unit_of[n], []).append(n)
    blocks = {u: _Block(graph, members, width, clustered=u[0] == "k")
              for u, members in units.items()}
    q = nx.DiGraph()
    q.add_nodes_from(units)
    q.add_edges_from((unit_of[a], unit_of[b]) for a, b in graph.edges()
                     if unit_of[a] != unit_of[b])
    layers = _unit_layers(graph, q, units)
    layer_of = {u: i for i, row in enumerate(layers) for u in row}
    for a, b, _ in _edges(graph):  # dummies, one per crossed layer
        for i in range(layer_of[unit_of[a]] + 1, layer_of[unit_of[b]]):
            layers[i].append(("d", a, b))
    pos: dict[int, tuple[float, float, float]] = {}
    route: dict[tuple[int, int], list[tuple[float, float]]] = {}
    y = 0.0
    for row in layers:
        row = sorted(row, key=lambda u: (_pred_x(graph, u, units, pos, route), _first(u, units)))
        sizes = [(_DUMMY_W, 0.0) if u[0] == "d" else (blocks[u].width, blocks[u].height)
                 for u in row]
        row_h = max(h for _, h in sizes)
        x = -(sum(w for w, _ in sizes) + _GAP_X * (len(row) - 1)) / 2
        for u, (w, _) in zip(row, sizes):
            if u[0] == "d":
                route.setdefault((u[1], u[2]), []).extend(
                    [(x + w / 2, y), (x + w / 2, y + max(row_h, _NODE_H))])
            else:
                for n, (ox, oy) in blocks[u].offsets.items():
                    pos[n] = (x + ox, y + oy, width[n])
                for e, points in blocks[u].slots.items():
                    route.setdefault(e, []).extend((x + px, y + py) for px, py in points)
            x += w + _GAP_X
        y += max(row_h, _NODE_H) + _GAP_Y
    for points in route.values():
        points.sort(key=lambda p: p[1])  # slots were added block by block, not top-down
    return pos, route


_DUMMY_W = 12.0   # the slot a long edge takes in a layer it crosses


def _first(u, units: dict) -> int:
    return u[1] if u[0] == "d" else min(units[u])


def _pred_x(graph, u, units: dict, pos: dict, route: dict) -> float:
    """Mean x of what feeds ``u``: source nodes, or the last bend of a long edge."""
    if u[0] == "d":
        points = route.get((u[1], u[2]))
        if points:
            return max(points, key=lambda p: p[1])[0]
        x, _, w = pos[u[1]]
        return x + w / 2
    xs = []
    for n in units[u]:
        for p in graph.inputs_of(n):
            if (p, n) in route:
                xs.append(max(route[(p, n)], key=lambda p: p[1])[0])
            elif p in pos:
                xs.append(pos[p][0] + pos[p][2] / 2)
    return sum(xs) / len(xs) if xs else 0.0


class _Block:
    """A kernel's members in their own rows (or one node), padded for the cluster's frame.

    Edges that would cross a row of the block (skipping rows inside it, entering a member
    below the first row, leaving one above the last) get a slot in that row, beside its
    nodes: entering edges on the left, the others on the right.
    """

    def __init__(self, graph, members: list[int], width: dict, clustered: bool) -> None:
        pad = _PAD if clustered else 0.0
        head = _LABEL_H if clustered else 0.0
        inside = set(members)
        rows = [sorted(gen) for gen in nx.topological_generations(graph.to_networkx().subgraph(members))]
        row_of = {n: i for i, r in enumerate(rows) for n in r}
        left: list[list] = [[] for _ in rows]
        right: list[list] = [[] for _ in rows]
        for m in members:
            for p in sorted(set(graph.inputs_of(m))):
                if p not in inside:
                    for i in range(row_of[m]):
                        left[i].append((p, m))
            for u in sorted(set(graph.users(m))):
                last = row_of[u] if u in inside else len(rows)
                for i in range(row_of[m] + 1, last):
                    right[i].append((m, u))
        items = [[("s", e) for e in lf] + [("n", n) for n in r] + [("s", e) for e in rt]
                 for lf, r, rt in zip(left, rows, right)]
        row_w = [sum(width[v] if k == "n" else _DUMMY_W for k, v in row) + _GAP_X * (len(row) - 1)
                 for row in items]
        self.width = max(row_w) + 2 * pad
        self.height = head + len(rows) * _NODE_H + (len(rows) - 1) * _GAP_Y + 2 * pad
        self.offsets: dict[int, tuple[float, float]] = {}
        self.slots: dict[tuple[int, int], list[tuple[float, float]]] = {}
        for i, (row, w) in enumerate(zip(items, row_w)):
            x, y = (self.width - w) / 2, head + pad + i * (_NODE_H + _GAP_Y)
            for kind, v in row:
                if kind == "n":
                    self.offsets[v] = (x, y)
                    x += width[v] + _GAP_X
                else:
                    self.slots.setdefault(v, []).extend([(x + _DUMMY_W / 2, y),
                                                         (x + _DUMMY_W / 2, y + _NODE_H)])
                    x += _DUMMY_W + _GAP_X


def _unit_layers(graph, q, units: dict) -> list[list]:
    """Longest-path layers of the block graph; constants sit just above their first user."""
    layer = {}
    for i, gen in enumerate(nx.topological_generations(q)):
        for u in gen:
            layer[u] = i
    for u, members in units.items():
        succ = list(q.successors(u))
        if u[0] == "n" and graph[u[1]].op == "const" and succ:
            layer[u] = max(0, min(layer[s] for s in succ) - 1)
    rows: list[list] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for u in sorted(units, key=lambda u: min(units[u])):
        rows[layer[u]].append(u)
    return [r for r in rows if r]
