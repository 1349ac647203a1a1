#!/usr/bin/env python3
"""check_trace.py - checks a loader trace (Chrome trace-event JSON) for test_loader_trace.

usage: check_trace.py TRACE --threads N --budget BYTES --slots N [--dropped] [--need NAME ...]
                      [--spans NAME=N ...] [--only-on NAME=TRACK-PREFIX ...]

Exit 0 when: the file parses as JSON; every thread that has an event has a thread_name (a track),
names are unique, and the reader, the consumer and each of the N workers is one; complete spans
("X") on each track nest (a span that starts inside another ends inside it too); counters stay
within the budget (host bytes) and the ring (slots); every --need name occurs; --spans: exactly N
complete spans of that name; --only-on: every event of that name is on a track whose name begins
with the prefix ("worker"); otherData counts dropped events (and --dropped: some were, and the note
says so). Otherwise prints why, exit 1."""

import argparse
import collections
import decimal
import json
import sys


def ns(x):
    return int(decimal.Decimal(x) * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--slots", type=int, required=True)
    ap.add_argument("--dropped", action="store_true")
    ap.add_argument("--need", action="append", default=[])
    ap.add_argument("--spans", action="append", default=[])
    ap.add_argument("--only-on", action="append", default=[])
    a = ap.parse_args()
    with open(a.trace) as f:
        doc = json.load(f, parse_float=decimal.Decimal)
    events = doc["traceEvents"]
    names = {}
    spans = collections.defaultdict(list)
    used = set()
    seen = collections.Counter()
    counters = collections.defaultdict(list)
    for e in events:
        ph = e["ph"]
        if ph == "M":
            if e["name"] == "thread_name":
                if e["tid"] in names:
                    return "tid %s named twice" % e["tid"]
                names[e["tid"]] = e["args"]["name"]
            continue
        seen[e["name"]] += 1
        if ph == "C":
            counters[e["name"]].append(int(e["args"]["value"]))
            continue
        used.add(e["tid"])
        if ph == "X":
            t0 = ns(e["ts"])
            spans[e["tid"]].append((t0, t0 + ns(e["dur"]), e["name"]))
        elif ph not in ("b", "e"):
            return "unexpected phase %r" % ph
    for tid in used:
        if tid not in names:
            return "events on tid %s, which has no thread_name track" % tid
    if len(set(names.values())) != len(names):
        return "two tracks share a name: %s" % sorted(names.values())
    want = {"reader", "consumer (next)"} | {"worker %d" % i for i in range(a.threads)}
    missing = want - set(names.values())
    if missing:
        return "no track for %s" % sorted(missing)
    for tid, lst in spans.items():
        lst.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for s in lst:
            while stack and stack[-1][1] <= s[0]:
                stack.pop()
            if stack and s[1] > stack[-1][1]:
                return "track %s: %r [%d, %d] overlaps %r [%d, %d] without nesting" % (
                    names[tid], s[2], s[0], s[1], stack[-1][2], stack[-1][0], stack[-1][1])
            stack.append(s)
    for v in counters["host bytes in use"]:
        if v > a.budget or v < 0:
            return "host bytes in use %d outside [0, budget %d]" % (v, a.budget)
    for v in counters["batch slots in use"]:
        if v > a.slots or v < 0:
            return "batch slots in use %d outside [0, %d slots]" % (v, a.slots)
    for n in a.need:
        if not seen[n]:
            return "no %r event (seen: %s)" % (n, dict(seen))
    for arg in a.spans:
        n, _, want = arg.rpartition("=")
        got = sum(1 for lst in spans.values() for s in lst if s[2] == n)
        if got != int(want):
            return "%d %r spans, expected %s" % (got, n, want)
    for arg in a.only_on:
        n, _, prefix = arg.rpartition("=")
        for e in events:
            if e["ph"] != "M" and e["name"] == n and not names.get(e["tid"], "").startswith(prefix):
                return "a %r event on track %r, not on a %r track" % (n, names.get(e["tid"]), prefix)
    other = doc["otherData"]
    if a.dropped and not (other["dropped_events"] > 0 and "dropped" in other["note"]):
        return "expected dropped events to be counted and noted: %r" % other
    if not a.dropped and other["dropped_events"]:
        return "events dropped: %r" % other
    print("ok: %d events, %d tracks, %s" % (len(events), len(names), dict(seen)))
    return None


if __name__ == "__main__":
    why = main()
    if why:
        print("check_trace: " + why, file=sys.stderr)
        sys.exit(1)
