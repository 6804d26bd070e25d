#!/usr/bin/env python3
"""Helper of bench/compare: checks benchmark output and prints the comparison tables.

  compare_report.py check FILE
      exit 0 if FILE holds one JSON array of benchmark records, else print why on one line, exit 1.

  compare_report.py report --spec SPEC.json --out RESULTS.json [--text TABLES.txt] RUN:STACK:FILE...
      merges every file (each record gains "run" and "stack"), writes them all to RESULTS.json,
      and prints one table per benchmark: rows are sizes, columns the stacks (the median of their
      runs and the spread), then onecopy and its ratio to the best of the other stacks.

SPEC.json: {"benches": [{"name", "unit", "better": "lower"|"higher", "what", "sizes": [...]}],
            "stacks": [names in column order], "onecopy": name of onecopy's column,
            "onecopy_transport": the transport label of onecopy's records,
            "onecopy_extra_transports": [other labels of onecopy's records shown as columns
            ONECOPY-LABEL, before onecopy's, when present; not peers], "header": [lines]}

A record's table is its "bench", except for "bench": "datatype", whose table is its "layout"
(vector, column).
"""

import json
import statistics
import sys

FIELDS = {"bench": str, "transport": str, "ranks": int, "bytes": int, "value": (int, float), "unit": str}


def load_records(path):
    """The records in `path`, or raises ValueError saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}")
    if not text.strip():
        raise ValueError("no output")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        first = text.strip().splitlines()[0][:120]
        raise ValueError(f"not JSON ({e.msg} at line {e.lineno}); first line: {first!r}")
    if not isinstance(data, list):
        raise ValueError("JSON, but not an array of records")
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise ValueError(f"record {i} is not an object")
        for key, kind in FIELDS.items():
            if key not in r:
                raise ValueError(f"record {i} has no {key!r}")
            if not isinstance(r[key], kind) or isinstance(r[key], bool):
                raise ValueError(f"record {i}: {key!r} has the wrong type")
        if r["bench"] == "datatype" and not isinstance(r.get("layout"), str):
            raise ValueError(f"record {i}: a datatype record without a 'layout' string")
    if not data:
        raise ValueError("an empty array")
    return data


def table_of(record):
    """The benchmark table a record belongs to: datatype records are split by layout."""
    if record["bench"] == "datatype":
        return record["layout"]
    return record["bench"]


def size_label(n):
    for unit, shift in (("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def fmt_value(v, unit):
    if unit == "us":
        if v < 10:
            return f"{v:.2f}"
        if v < 1000:
            return f"{v:.1f}"
        return f"{v:.0f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def cell(values, unit):
    """'median ±spread%' where the spread is half of max-min, relative to the median."""
    if not values:
        return "-"
    med = statistics.median(values)
    text = fmt_value(med, unit)
    if len(values) > 1 and med > 0:
        spread = (max(values) - min(values)) / 2 / med * 100
        text += f" ±{spread:.0f}%" if spread >= 1 else " ±<1%"
    return text


def report(spec, sources, out_path, text_path):
    records = []
    for run, stack, path in sources:
        try:
            data = load_records(path)
        except ValueError:
            continue  # the script already said why this one failed
        for r in data:
            records.append(dict(r, run=run, stack=stack))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1)
        f.write("\n")

    onecopy = spec["onecopy"]
    onecopy_transport = spec.get("onecopy_transport")
    extra_transports = spec.get("onecopy_extra_transports", [])
    # The same MPICH-built binary run on onecopy's libmpi.so.12: not a peer; shown after onecopy
    # with its ratio to the stack whose library it replaces and to onecopy's own API.
    same = spec.get("same_binary") or {}
    same_col, same_base = same.get("column"), same.get("against")
    show_same = same_col in spec["stacks"]
    stacks = [s for s in spec["stacks"] if s not in (onecopy, same_col)]
    show_onecopy = onecopy in spec["stacks"]
    runs = sorted({r["run"] for r in records})

    # values[(column, table, bytes)] = [one value per run]
    values = {}
    extra_columns = []  # onecopy's other transports that reported something, in spec order
    for r in records:
        column = r["stack"]
        if column == onecopy and onecopy_transport and r["transport"] != onecopy_transport:
            if r["transport"] not in extra_transports:
                continue
            column = f"{onecopy}-{r['transport']}"
            if column not in extra_columns:
                extra_columns.append(column)
        values.setdefault((column, table_of(r), r["bytes"]), []).append(float(r["value"]))
    extra_columns.sort(key=lambda c: extra_transports.index(c[len(onecopy) + 1:]))
    if not show_onecopy:
        extra_columns = []

    lines = list(spec.get("header", []))
    lines.append(f"# runs: {len(runs)}; each cell: median of the runs ±half their spread")
    for bench in spec["benches"]:
        name, unit, lower = bench["name"], bench["unit"], bench["better"] == "lower"
        if lower:
            ratio_rule = "ratio = best peer / onecopy"
        else:
            ratio_rule = "ratio = onecopy / best peer"
        lines.append("")
        title = f"## {name}: {bench.get('what', '')}, {unit} ({bench['better']} is better)"
        if show_onecopy:
            title += f"; {ratio_rule}: above 1 means onecopy is better"
        if show_same:
            title += (f"; {same_col}: the {same_base} binary on onecopy's libmpi.so.12, its ratios"
                      " above 1 when it is better")
        lines.append(title)
        header = ["size"] + stacks + extra_columns
        header += ([onecopy, "ratio"] if show_onecopy else [])
        if show_same:
            header += [same_col, f"vs {same_base}", f"vs {onecopy}"]
        header += ["best peer"]
        rows = []
        for size in bench["sizes"]:
            row = [size_label(size)]
            best = None  # (value, stack)
            for s in stacks:
                vals = values.get((s, name, size), [])
                row.append(cell(vals, unit))
                if vals:
                    med = statistics.median(vals)
                    if best is None or (med < best[0] if lower else med > best[0]):
                        best = (med, s)
            for c in extra_columns:
                row.append(cell(values.get((c, name, size), []), unit))
            if show_onecopy:
                vals = values.get((onecopy, name, size), [])
                row.append(cell(vals, unit))
                if vals and best and statistics.median(vals) > 0 and best[0] > 0:
                    mine = statistics.median(vals)
                    ratio = best[0] / mine if lower else mine / best[0]
                    row.append(f"{ratio:.3g}x")
                else:
                    row.append("-")
            if show_same:
                vals = values.get((same_col, name, size), [])
                row.append(cell(vals, unit))
                for base in (same_base, onecopy):
                    other = values.get((base, name, size), [])
                    if vals and other and statistics.median(vals) > 0 and statistics.median(other) > 0:
                        a, b = statistics.median(vals), statistics.median(other)
                        row.append(f"{(b / a if lower else a / b):.3g}x")
                    else:
                        row.append("-")
            row.append(best[1] if best else "-")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            first = r[0].ljust(widths[0])
            rest = [r[i].rjust(widths[i]) for i in range(1, len(r) - 1)]
            lines.append("  ".join([first] + rest + [r[-1]]).rstrip())

    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if text_path:
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(text)
    return 0 if records else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "check":
        try:
            n = len(load_records(argv[2]))
        except ValueError as e:
            print(e)
            return 1
        print(f"{n} records")
        return 0
    if len(argv) >= 2 and argv[1] == "report":
        args, sources, spec, out, text = argv[2:], [], None, None, None
        i = 0
        while i < len(args):
            if args[i] in ("--spec", "--out", "--text") and i + 1 < len(args):
                if args[i] == "--spec":
                    with open(args[i + 1], encoding="utf-8") as f:
                        spec = json.load(f)
                elif args[i] == "--out":
                    out = args[i + 1]
                else:
                    text = args[i + 1]
                i += 2
                continue
            run, stack, path = args[i].split(":", 2)
            sources.append((int(run), stack, path))
            i += 1
        if spec is None or out is None:
            print("compare_report.py report: --spec and --out are required", file=sys.stderr)
            return 2
        return report(spec, sources, out, text)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
