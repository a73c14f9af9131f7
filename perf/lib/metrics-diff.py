#!/usr/bin/env python3
"""perf/lib/metrics-diff.py BEFORE AFTER [PREFIX]: per-command latency from two /metrics snapshots.

Subtracts the Prometheus histograms `PREFIX_command_seconds` (default apus_imap4be) of BEFORE from
AFTER, so the figures cover only what ran between them, and prints per command: count, mean, and
p50/p90/p99 interpolated inside the bucket that holds them (so within that bucket's bounds).
"""
import re
import sys

LINE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


def read(path, prefix):
    """{command: {"sum": s, "count": n, "buckets": {le: cumulative}}}"""
    table = {}
    for line in open(path):
        match = LINE.match(line.strip())
        if not match or not match[1].startswith(prefix + "_command_seconds"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        entry = table.setdefault(labels.get("command", "?"), {"sum": 0.0, "count": 0, "buckets": {}})
        value = float(match[3])
        if match[1].endswith("_bucket"):
            entry["buckets"][float(labels["le"])] = value
        elif match[1].endswith("_sum"):
            entry["sum"] = value
        elif match[1].endswith("_count"):
            entry["count"] = value
    return table


def percentile(buckets, count, fraction):
    """Linear inside the bucket where the cumulative count reaches fraction * count."""
    wanted, lower, below = fraction * count, 0.0, 0.0
    for bound in sorted(buckets):
        if buckets[bound] >= wanted:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((wanted - below) / inside if inside else 1)
        lower, below = bound, buckets[bound]
    return lower


def main():
    before_path, after_path = sys.argv[1:3]
    prefix = sys.argv[3] if len(sys.argv) > 3 else "apus_imap4be"
    before, after = read(before_path, prefix), read(after_path, prefix)
    print("%-14s %8s %9s %9s %9s %9s" % ("command", "count", "mean ms", "p50 ms", "p90 ms", "p99 ms"))
    all_buckets, all_count, all_sum = {}, 0, 0.0
    for command in sorted(after):
        old = before.get(command, {"sum": 0.0, "count": 0, "buckets": {}})
        count = after[command]["count"] - old["count"]
        if count <= 0:
            continue
        total = after[command]["sum"] - old["sum"]
        buckets = {le: n - old["buckets"].get(le, 0) for le, n in after[command]["buckets"].items()}
        for le, n in buckets.items():
            all_buckets[le] = all_buckets.get(le, 0) + n
        all_count += count
        all_sum += total
        print("%-14s %8d %9.3f %9.3f %9.3f %9.3f" % (command, count, total / count * 1000,
              *(percentile(buckets, count, f) * 1000 for f in (0.5, 0.9, 0.99))))
    if all_count:
        print("%-14s %8d %9.3f %9.3f %9.3f %9.3f" % ("all", all_count, all_sum / all_count * 1000,
              *(percentile(all_buckets, all_count, f) * 1000 for f in (0.5, 0.9, 0.99))))


if __name__ == "__main__":
    main()
