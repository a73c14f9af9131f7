#!/usr/bin/env python3
"""perf/lib/summarize.py: the summary table of perf/README.md, from perf/results/*/*.json.

For each benchmark and target, over the runs of the newest commit measured: the median commands/s (and sessions/s for churn), the
median p99 latency, violations, server CPU per command when measured, the newest commit and date.
With --update README.md it replaces the text between the summary markers in that file.
"""
import glob
import json
import os
import statistics
import sys

BEGIN = "<!-- summary:begin (perf/lib/summarize.py --update perf/README.md) -->"
END = "<!-- summary:end -->"


def rows(results):
    groups = {}
    for path in sorted(glob.glob(os.path.join(results, "*", "*.json"))):
        try:
            data = json.load(open(path))
        except ValueError:
            continue
        # Runs at different client counts are different measurements (backend-vs-dovecot has 50 and 500).
        target = data.get("target", "?")
        if data.get("mode") == "stress" and data.get("clients"):
            target = "%s, %d clients" % (target, data["clients"])
        groups.setdefault((data.get("bench", "?"), target), []).append(data)
    lines = ["| benchmark | target | runs | commands/s (median) | sessions/s | p99 ms | violations "
             "| server CPU ms/command | load avg | commit | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    others = []
    for (bench, target), every in sorted(groups.items()):
        # The newest commit's runs: older ones stay in perf/results/ as history.
        newest_commit = max(every, key=lambda r: r.get("date", "")).get("commit")
        runs = [r for r in every if r.get("commit") == newest_commit]
        newest = max(runs, key=lambda r: r.get("date", ""))
        figure = other_figure(runs)
        if figure:
            others.append("| %s | %s | %d | %s | %s | %s |" % (
                bench, target, len(runs), figure, newest.get("commit", "")[:10], newest.get("date", "")))
        if "commands_per_s" not in newest or newest.get("mode") == "idle":
            continue
        rate = statistics.median(r["commands_per_s"] for r in runs)
        sessions = statistics.median(
            r["commands"].get("logout", {}).get("ok", 0) / max(r["elapsed_s"], 0.001) for r in runs)
        p99 = statistics.median(r["commands"]["all"]["p99_ms"] for r in runs)
        violations = sum(r.get("violations_total", 0) for r in runs)
        cpu = [r["server_cpu_ms_per_command"].get(r.get("target")) for r in runs if r.get("server_cpu_ms_per_command")]
        cpu_text = "%.3f" % statistics.median(cpu) if cpu else "-"
        loads = [r["machine"]["loadavg"][0] for r in runs if r.get("machine", {}).get("loadavg")]
        load_text = "%.1f" % max(loads) if loads else "-"
        lines.append("| %s | %s | %d | %.0f | %.1f | %.2f | %d | %s | %s | %s | %s |" % (
            bench, target, len(runs), rate, sessions, p99, violations, cpu_text, load_text,
            newest.get("commit", "")[:10], newest.get("date", "")))
    if others:
        lines += ["", "| benchmark | target | runs | figure (median) | commit | date |", "|---|---|---|---|---|---|"] + others
    return "\n".join(lines)


def other_figure(runs):
    """The figure of a result that is not a throughput run: instructions or memory per unit."""
    if all("instructions_per_command" in r for r in runs):
        return "%d instructions/command" % statistics.median(r["instructions_per_command"] for r in runs)
    if all("instructions_per_session" in r for r in runs):
        return "%d instructions/session" % statistics.median(r["instructions_per_session"] for r in runs)
    if all("rss_kib" in r for r in runs):
        return "%.1f KiB/session front end, %.1f KiB back end (%d sessions)" % (
            statistics.median(r["rss_kib"]["apus-frontend"]["per_session"] for r in runs),
            statistics.median(r["rss_kib"]["apus-backend"]["per_session"] for r in runs),
            statistics.median(r["sessions_held"] for r in runs))
    return None


def main():
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results")
    table = rows(results)
    if len(sys.argv) == 3 and sys.argv[1] == "--update":
        text = open(sys.argv[2]).read()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        open(sys.argv[2], "w").write(text[:start] + "\n" + table + "\n" + text[end:])
    else:
        print(table)


if __name__ == "__main__":
    main()
