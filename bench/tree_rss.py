#!/usr/bin/python3
"""tree_rss.py - runs a command and samples the memory of its whole process tree from /proc.

Every --interval seconds (default 0.05) it finds the command's process and all its descendants
(by walking the parent links of every process in /proc), and adds up their resident memory
(RSS, from /proc/PID/statm) and, at every --pss-every'th sample (default 10: PSS costs milliseconds
per sample for a large process), their proportional set size (PSS, from /proc/PID/smaps_rollup: a
page shared by n processes counts 1/n in each). The peak of each sum is
kept, and also the peak of each sum per number of processes alive at the sample (so a caller
can tell a phase with helper processes from one without); each change in that number is logged
with the time, the RSS sum and the CPU seconds used so far by the whole tree (every process in it,
zombies included, plus what each has already reaped). Threads are not processes: a process with many threads counts once.

The command inherits stdin, stdout and stderr; the summary goes, as one JSON object, to --out
(or stderr). The exit status is the command's. The CPU time of the tree (the command and every
descendant it waited for) comes from wait4().

usage: bench/tree_rss.py [--interval S] [--pss-every N] [--out FILE] -- CMD [ARGS...]
"""
import argparse
import json
import os
import signal
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def parent_links():
    """{pid: ppid} for every process readable in /proc now (the slow way, ~4 ms for 100 processes)."""
    links = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:  # gone since listdir
            continue
        # The command name (field 2) is in parentheses and may hold spaces or ')'; ppid is the
        # second field after the last ')'.
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1:
            links[int(name)] = int(rest[1])
    return links


def children(pid):
    """The children of pid, from /proc/PID/task/*/children (a child is listed under the thread
    that forked it); None where the kernel lacks these files (CONFIG_PROC_CHILDREN)."""
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out  # exited
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            if not os.path.exists("/proc/%d/task/%s" % (pid, tid)):
                continue  # the thread ended
            return None
        except OSError:
            continue
    return out


HAVE_CHILDREN_FILES = children(os.getpid()) is not None


def tree(root):
    """The root and all its descendants alive now."""
    if HAVE_CHILDREN_FILES:
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children(pid) or ())
        return out
    kids = {}
    for pid, ppid in parent_links().items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def rss_bytes(pid):
    try:
        with open("/proc/%d/statm" % pid, "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None  # exited, or a zombie with no memory left to read


def pss_bytes(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """CPU seconds of pid and of the children it has waited for (utime+stime+cutime+cstime)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2:].split()  # rest[0] is field 3 (state); utime is field 14
    return sum(int(x) for x in rest[11:15]) / TICK


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    ap.add_argument("--pss-every", type=int, default=10,
                    help="read PSS at every Nth sample only (it costs ~2.5 ms per 100 MiB mapped); 0: never")
    ap.add_argument("--out", help="write the JSON summary here (default: stderr)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given")

    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print("tree_rss: cannot run %s: %s" % (cmd[0], e), file=sys.stderr)
        os._exit(127)

    peak_rss = peak_pss = 0
    peak_by_nproc = {}
    peak_pss_by_nproc = {}
    max_nproc = samples = 0
    phases = []  # one entry each time the number of live processes changes
    sample_s = 0.0  # time spent sampling (its own cost)
    status = ru = None
    # Forward Ctrl-C and termination to the command rather than dying without its status.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    while True:
        s0 = time.perf_counter()
        # Read the tree before reaping: once waited for, the root's pid may be reused.
        rss_sum = pss_sum = nproc = 0
        cpu_sum = 0.0
        want_pss = args.pss_every > 0 and samples % args.pss_every == 0
        for p in tree(pid):
            # CPU: every process of the tree, zombies included (their times reach the parent's
            # cutime only once reaped), plus what each has reaped already.
            cpu_sum += cpu_s(p) or 0.0
            r = rss_bytes(p)
            if not r:  # exited, or a zombie waiting to be reaped
                continue
            nproc += 1
            rss_sum += r
            if want_pss:
                pss_sum += pss_bytes(p)
        if nproc:
            samples += 1
            peak_rss = max(peak_rss, rss_sum)
            peak_pss = max(peak_pss, pss_sum)
            peak_by_nproc[nproc] = max(peak_by_nproc.get(nproc, 0), rss_sum)
            if want_pss:
                peak_pss_by_nproc[nproc] = max(peak_pss_by_nproc.get(nproc, 0), pss_sum)
            max_nproc = max(max_nproc, nproc)
            if not phases or phases[-1]["processes"] != nproc:
                phases.append({"t_s": round(s0 - t0, 3), "processes": nproc, "rss_bytes": rss_sum,
                               "cpu_s": round(cpu_sum, 2)})
        sample_s += time.perf_counter() - s0
        done, st, usage = os.wait4(pid, os.WNOHANG)
        if done == pid:
            status, ru = st, usage
            break
        time.sleep(max(0.0, args.interval - (time.perf_counter() - s0)))
    wall = time.perf_counter() - t0

    rc = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (
        os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
    summary = {
        "cmd": cmd,
        "exit_status": rc,
        "wall_s": round(wall, 3),
        "interval_s": args.interval,
        "samples": samples,
        "sampling_s": round(sample_s, 3),
        "peak_rss_bytes": peak_rss,
        "peak_pss_bytes": peak_pss if args.pss_every > 0 else None,
        "pss_every": args.pss_every,
        "process_discovery": "task/*/children" if HAVE_CHILDREN_FILES else "/proc scan",
        "peak_rss_bytes_by_nproc": {str(k): v for k, v in sorted(peak_by_nproc.items())},
        "peak_pss_bytes_by_nproc": {str(k): v for k, v in sorted(peak_pss_by_nproc.items())},
        "max_processes": max_nproc,
        "phases": phases,
        "cpu_user_s": round(ru.ru_utime, 3),
        "cpu_sys_s": round(ru.ru_stime, 3),
        "largest_single_process_maxrss_bytes": ru.ru_maxrss * 1024,
    }
    text = json.dumps(summary, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text, file=sys.stderr)
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
