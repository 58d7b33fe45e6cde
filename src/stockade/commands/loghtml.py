"""`stockade logs --html`: one self-contained page (plotly with its JavaScript inlined, so viewing it needs
no network): drops over time per policy line, top sources, a port heat map, and the per-line table."""
from __future__ import annotations

import html

from ..kernel.logs import TOP, Report, timeline

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}td.n{text-align:right}")


def page(report: Report, out: dict, what: str = "LOG lines") -> str:
    """The page; `what` names the report's items (LOG lines, NFLOG messages)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    per_group = timeline(report, "group")
    drops = go.Figure([go.Bar(name=group, x=[t for t, _ in series], y=[n for _, n in series])
                       for group, series in sorted(per_group.items())])
    drops.update_layout(barmode="stack", title=f"{what} over time, per policy line (other prefixes in [ ])",
                        xaxis_title="time (UTC)", yaxis_title="lines", legend_title="policy line")
    sources = out["sources"][::-1]
    top = go.Figure([go.Bar(x=[r["count"] for r in sources], y=[r["source"] for r in sources], orientation="h")])
    top.update_layout(title=f"top {TOP} sources", xaxis_title="lines")
    per_port = timeline(report, "port")
    ports = [r["port"] for r in out["ports"]]
    times = [t for t, _ in next(iter(per_port.values()), [])]
    labels = [f"{r['port']} ({r['service']})" if r["service"] else r["port"] for r in out["ports"]]
    heat = go.Figure([go.Heatmap(z=[[n for _, n in per_port[p]] for p in ports], x=times, y=labels,
                                 colorscale="Reds")])
    heat.update_layout(title=f"top {TOP} destination ports over time", xaxis_title="time (UTC)",
                       xaxis_type="category")
    plots = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=name,
                         config={"displaylogo": False})
             for i, (name, fig) in enumerate((("drops", drops), ("sources", top), ("ports", heat)))]
    rows = "".join(f"<tr><td>{html.escape(r['line'])}</td><td>{html.escape(r['note'])}</td>"
                   f"<td class=n>{r['count']}</td><td><code>{html.escape(r['text'] or '')}</code></td></tr>"
                   for r in out["lines"])
    rows += "".join(f"<tr><td>[{html.escape(r['prefix'])}]</td><td>other tool</td><td class=n>{r['count']}</td>"
                    "<td></td></tr>" for r in out["foreign"])
    summary = (f"{out['logged']} {what} of {out['read']} read, {html.escape(out['first'] or '-')} to "
               f"{html.escape(out['last'] or '-')}")
    return (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>stockade logs</title><style>{STYLE}</style>"
            f"</head><body><h1>stockade logs</h1><p>{summary}</p>{plots[0]}"
            f"<h2>per policy line</h2><table id=lines><tr><th>policy line</th><th>rule</th><th>count</th>"
            f"<th>text</th></tr>{rows}</table>{plots[1]}{plots[2]}</body></html>\n")
