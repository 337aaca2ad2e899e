#!/usr/bin/env python3
"""Merges the JSON reports of several dim-nodesim processes (storm_bench.sh):
counts add up, per-node samples are pooled and their percentiles computed
again, and span_s is the time from the first start to the last boot (or, for
runs that never booted, the last end)."""
import json
import math
import sys

reports = [json.load(open(f)) for f in sys.argv[1:]]
out = {"processes": len(reports)}
for k in ("nodes", "failures", "failed_nodes", "unfinished_nodes", "bytes_in", "max_connections"):
    out[k] = sum(r.get(k, 0) for r in reports)
out["newest_version"] = max(r.get("newest_version", 0) for r in reports)
start = min(r["started_unix"] for r in reports)
end = max(r.get("booted_unix", r["ended_unix"]) for r in reports)
out["span_s"] = max(end - start, 1e-9)
out["load"] = reports[-1].get("load", "?")
out["failure_samples"] = [f for r in reports for f in r.get("failure_samples", [])][:20]


def pct(v, q):
    return v[min(len(v) - 1, math.ceil(q * len(v)) - 1)] if v else 0


out["phases"] = {}
for name in sorted({p for r in reports for p in r.get("phases", {})}):
    v = sorted(x for r in reports for x in r.get("phases", {}).get(name, {}).get("samples", []))
    out["phases"][name] = {"count": len(v), "p50": pct(v, .5), "p90": pct(v, .9), "p99": pct(v, .99),
                           "max": v[-1] if v else 0}
out["requests"] = {}
for name in sorted({k for r in reports for k in r.get("requests", {})}):
    rs = [r["requests"][name] for r in reports if name in r.get("requests", {})]
    out["requests"][name] = {k: sum(x[k] for x in rs) for k in ("count", "failures", "retries", "bytes")}
    out["requests"][name]["p99_max_of_processes"] = max(x["p99"] for x in rs)
json.dump(out, sys.stdout)
print()
