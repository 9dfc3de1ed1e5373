"""Schema check of an artefact manifest's ``quoted`` rows and ``reproduced_if`` block.

``check_manifest(m)`` returns a list of one-line problems (empty = valid). It checks what the report
needs to render quoted rows and to evaluate the reproduction status:

* ``quoted`` rows (only in ``source: runs`` tables): ``label``, ``source`` (where in the paper), ``values``
  (metric -> finite number) and an optional ``fmt`` (metric -> ``pct``/``pct3``/``int``/``sci``/``float``) whose keys
  are among ``values``.
* ``reproduced_if`` (a list, may be empty when the paper states nothing checkable): each check is either
  a tolerance check ``{table, row, metric, tol}`` — the table is a ``runs`` table of this manifest, ``row``
  one of its row labels, ``metric`` one of that row's metrics with a numeric ``paper`` value, ``tol`` > 0,
  optional ``per: parent_key`` (the metric is the parent's: one run per parent, pooled across configs) —
  or an ordering check ``{figure, metric, index, hue, order, better, min_fraction?, where?, x_name?}`` on a
  figure or a ``records`` table of this manifest (``order``: at least two distinct labels, best first;
  ``x_name``: what the status calls the ``index`` values, e.g. ``tolerance`` for a column named ``value``).
"""

from __future__ import annotations

import math
from typing import Any

FMTS = {"pct", "pct3", "int", "sci", "float"}
TOL_KEYS = {"table", "row", "metric", "tol", "where", "per"}
POOL_KEYS = {"parent_key"}  # columns a tolerance check may pool configs by (``per``)
ORDER_KEYS = {"figure", "metric", "index", "hue", "order", "better", "min_fraction", "where", "x_name"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_quoted(mid: str, spec: dict[str, Any]) -> list[str]:
    out = []
    quoted = spec.get("quoted") or []
    if quoted and spec.get("source", "runs") != "runs":
        out.append(f"{mid}: table {spec['name']}: quoted rows need source: runs")
    for q in quoted:
        where = f"{mid}: table {spec['name']}: quoted {q.get('label')!r}"
        if not isinstance(q.get("label"), str) or not q["label"]:
            out.append(f"{where}: missing label")
        if not isinstance(q.get("source"), str) or not q["source"].strip():
            out.append(f"{where}: missing source (table and row of the paper)")
        values = q.get("values")
        if not isinstance(values, dict) or not values:
            out.append(f"{where}: values must be a non-empty mapping metric -> number")
            continue
        out += [f"{where}: value {k}={v!r} is not a finite number" for k, v in values.items() if not _is_number(v)]
        fmt = q.get("fmt") or {}
        if not isinstance(fmt, dict):
            out.append(f"{where}: fmt must be a mapping metric -> format")
            continue
        out += [f"{where}: fmt of {k} ({f!r}) not in {sorted(FMTS)}" for k, f in fmt.items() if f not in FMTS]
        out += [f"{where}: fmt names {k}, which has no value" for k in fmt if k not in values]
        extra = set(q) - {"label", "values", "source", "fmt"}
        if extra:
            out.append(f"{where}: unknown keys {sorted(extra)}")
    return out


def _check_tol(mid: str, c: dict[str, Any], tables: dict[str, dict[str, Any]]) -> list[str]:
    where = f"{mid}: reproduced_if table={c.get('table')!r} row={c.get('row')!r} metric={c.get('metric')!r}"
    spec = tables.get(c.get("table"))
    if spec is None or spec.get("source", "runs") != "runs":
        return [f"{where}: no runs table of that name"]
    rows = {r["label"]: r for r in spec.get("rows") or []}
    if c.get("row") not in rows:
        return [f"{where}: no such row (rows: {sorted(rows)})"]
    mspec = (rows[c["row"]].get("metrics") or {})
    if c.get("metric") not in mspec:
        return [f"{where}: the row has no such metric"]
    out = []
    if not _is_number((mspec[c["metric"]] or {}).get("paper")):
        out.append(f"{where}: tol needs a numeric paper value in the row's metrics")
    if not _is_number(c.get("tol")) or c["tol"] <= 0:
        out.append(f"{where}: tol must be a positive number")
    if "per" in c and c["per"] not in POOL_KEYS:
        out.append(f"{where}: per must be one of {sorted(POOL_KEYS)}")
    return out


def _check_order(mid: str, c: dict[str, Any], figures: set[str], records: set[str]) -> list[str]:
    where = f"{mid}: reproduced_if figure={c.get('figure')!r} metric={c.get('metric')!r}"
    out = []
    if c.get("figure") not in figures | records:
        out.append(f"{where}: no figure or records table of that name")
    for key in ("metric", "index", "hue"):
        if not isinstance(c.get(key), str) or not c[key]:
            out.append(f"{where}: {key} must be a column name")
    order = c.get("order")
    if not isinstance(order, list) or len(order) < 2 or len(set(map(str, order))) != len(order):
        out.append(f"{where}: order must list at least two distinct labels, best first")
    if c.get("better") not in ("higher", "lower"):
        out.append(f"{where}: better must be higher or lower")
    mf = c.get("min_fraction", 1.0)
    if not _is_number(mf) or not 0 < mf <= 1:
        out.append(f"{where}: min_fraction must be in (0, 1]")
    return out


def check_manifest(m: dict[str, Any]) -> list[str]:
    """Problems of manifest ``m``'s ``quoted`` rows and ``reproduced_if`` checks (empty list = valid)."""
    mid = m.get("id", m.get("_file", "?"))
    out: list[str] = []
    tables = {t["name"]: t for t in m.get("tables") or []}
    if len(tables) != len(m.get("tables") or []):
        out.append(f"{mid}: duplicate table names")
    for spec in tables.values():
        out += _check_quoted(mid, spec)
    figures = {f["name"] for f in m.get("figures") or []}
    records = {n for n, t in tables.items() if t.get("source", "runs") == "records"}
    checks = m.get("reproduced_if")
    if not isinstance(checks, list):
        return out + [f"{mid}: reproduced_if must be a list (empty when the paper states nothing checkable)"]
    for c in checks:
        if not isinstance(c, dict) or ("table" in c) == ("figure" in c):
            out.append(f"{mid}: reproduced_if entry {c!r} needs exactly one of table / figure")
            continue
        if c.get("where") is not None and not isinstance(c["where"], dict):
            out.append(f"{mid}: reproduced_if entry {c!r}: where must be a mapping")
        if "table" in c:
            unknown = set(c) - TOL_KEYS
            out += _check_tol(mid, c, tables)
        else:
            unknown = set(c) - ORDER_KEYS
            out += _check_order(mid, c, figures, records)
        if unknown:
            out.append(f"{mid}: reproduced_if entry {c!r}: unknown keys {sorted(unknown)}")
    return out
