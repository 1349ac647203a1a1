#!/usr/bin/env python3
"""remote_bench.py - the loader over HTTP (nginx) and S3 (Swift's s3api, or Ceph's radosgw) on
loopback, against the same loader on local disk and against curl fetching the same objects with
the same parallelism.

One run: generates (or reuses, in WORK) a token set (sp-gen-tokens, packed with --seq-len 1024)
and an ImageNet-like image set (sp-gen-imagefolder, packed --strict); starts nginx serving WORK/serve
and the S3 server (tests/remote/servers.py, state in WORK/state) and uploads both datasets to the
bucket `bench`; then measures, each side with its files or objects read once beforehand:

  - ours, local:  shardpack bench DATASET_DIR
  - ours, http:   shardpack bench http://127.0.0.1:PORT/NAME.sp
  - ours, s3:     shardpack bench s3://bench/NAME.sp   (AWS_* variables pointing at the S3 server)
    (images with --transform train --image-size 224 --image-layout nchw --drop-last; every run
    with the same --threads, --batch-size and, remote, --remote-inflight P and --remote-part-size S
    where the library has them; --epochs E, or by default as many whole epochs as fill 2 s)
  - the I/O peer: one curl process with --parallel --parallel-max P fetching every object of the
    dataset as ranged GETs of S bytes, E times (by default: timed once, then as many times as fill
    2 s), over HTTP and over S3 (curl's own --aws-sigv4); the fastest of 3 runs counts
  - the batches: one epoch through the Python Loader from each place, every batch hashed; the
    digests must be equal (bit for bit the same batches).
  - time to first batch on a dataset of 10,000 one-block shards (bench/bench_first_batch, which
    makes it), from each place (target: under 1 s).
  - with --cache F1,F2,...: for each remote place and set, two epochs through the Python Loader
    without a cache and with cache_size = F x the dataset's size (a fresh cache_dir each), giving
    per epoch the block bytes fetched (the loader's remote_bytes, and for http what nginx's access
    log says it sent), cache hits and evictions, and each epoch's samples/s (the reader runs a
    little ahead into the next epoch, so the split at the epoch's end is approximate).
The S3 server is Swift (--s3-server swift, the default: the proxy and the object server are
Python, and on a small host they take CPU from the loader and curl alike) or Ceph's radosgw
(--s3-server ceph: a C++ gateway in front of a one-node cluster whose OSD keeps the objects in
memory; packages ceph-mon ceph-osd radosgw ceph-common, which .ci/setup-debian installs).
Swift's storage stays in WORK/state between runs: objects already uploaded with the same size
and MD5 are not sent again (10,000 small objects take Swift over a minute). Ceph's cluster is
made anew at each run, and everything is uploaded again.

The last lines are the ratios the issue asks for: images ours-remote/ours-local (samples/s) and
tokens ours-remote/curl (bytes/s), each with the target 0.9. Raw results: WORK/remote_bench.json.

Beside each ratio, its CPU ceiling on this host. Every run records the CPU it used (ours: the
`cpu_s` of shardpack bench, its process from the loader's open, the limit's child apart; curl: its
rusage) and what the servers used meanwhile (every process of the sessions tests/remote/servers.py
started for that place: nginx and its workers, the S3 server's processes, the latency proxy). On a
host where the servers, the peer and the loader share a few cores, those seconds bound the ratio
whatever the loader does: images_PLACE_cpu_ceiling is the CPU a sample costs from local disk over
what it costs remotely with the server's share (and, were fetching free to the loader, the
server's share alone); tokens_PLACE_cpu_ceiling is the rate every core busy at ours' CPU a byte
(with the server's) would give, over curl's measured rate.

With --token-compress none the token set is packed with its blocks stored raw (a dataset of its own,
tokens-N-none.sp): the loader then only checks and copies what it fetches, so on a host with few
cores the tokens ratio says how the remote reader keeps up with curl rather than how zstd compares
with memcpy.

With --request-latency S (e.g. 0.05) every request to nginx and to the S3 server, ours and curl's,
goes through tests/remote/faultproxy.py, which answers each one S seconds late: an object store's
time to first byte, so that the tokens ratio says whether enough bytes are in flight to cover it
(a Python proxy: it carries a few hundred MB/s at most on a small host, so compare within a run).

With --link-rate R (e.g. 2400mbit): everything above runs in a private network namespace (unshare -n,
root or CAP_SYS_ADMIN) whose loopback is limited to R by a tbf qdisc, so that curl, nginx, the S3
server and the loader share a link slower than this machine's decoding: the tokens ratio then
compares how well each keeps that link full, not how fast each uses CPU (on plain loopback curl
moves bytes at memcpy speed while the loader decompresses and checks them). Swift's proxy fetches
each object from its object server (radosgw from its OSD) over the same lo, so an S3 byte crosses
the link twice and an HTTP byte once: compare each place with its own curl run. Without unshare,
ip, tc or the tbf qdisc it says why and exits 1.

usage: bench/remote_bench.py [--build DIR] [--work DIR] [--images N] [--tokens N] [--threads T]
                             [--batch-size B] [--epochs E] [--parallel P] [--part-size SIZE]
                             [--first-batch-shards N] [--no-s3] [--s3-server swift|ceph] [--no-http] [--cache F,...]
                             [--sets tokens,images] [--token-compress auto|zstd|none] [--request-latency S]
                             [--ours-inflight same|auto|N]
                             [--link-rate R [--link-burst B] [--link-latency T]]
"""
import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "remote"))
import servers  # noqa: E402
import faultproxy  # noqa: E402

BUCKET = "bench"
MIN_SECONDS = 2.0  # a timed run without --epochs: shardpack bench's own rule (whole epochs until 2 s)


def part_size_arg(text):
    """argparse's type for a size: the text back when size_arg reads it, else a usage error."""
    try:
        size_arg(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError("'%s' is not a size (8M, 512K, 1048576)" % text)
    return text


def size_arg(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    return int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t)


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def warm(paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def dataset_files(ds):
    return sorted(p for p in pathlib.Path(ds).iterdir() if p.is_file())


# ----------------------------------------------------------------------------------------------
# ours: shardpack bench

# ----------------------------------------------------------------------------------------------
# CPU: on a small host the servers, the peer and the loader share the same cores, so every run
# records what it and the servers used; the ratios' ceilings come from those numbers

def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench_ours(sp, path, common, remote_flags, env, state=None, groups=()):
    cmd = [sp, "bench", path, "--json", "--quiet"] + common + (remote_flags if "://" in path else [])
    s0 = servers.sessions_cpu(state, groups) if groups else 0.0
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    s1 = servers.sessions_cpu(state, groups) if groups else 0.0
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    out = json.loads(r.stdout)
    res = {k: out.get(k) for k in ("samples_per_s", "bytes_per_s", "read_bytes_per_s", "peak_rss_bytes",
                                   "host_memory_bytes", "seconds", "samples", "epochs", "io", "threads",
                                   "remote_requests", "remote_gets", "remote_transfers", "remote_pending_peak",
                                   "io_note", "cpu_s")}
    if groups:  # the limit's measurement too (it reads every block once): a small part of the run's
        res["server_cpu_s"] = round(s1 - s0, 2)
    return res


def reads_urls(sp, url, env):
    """None if `shardpack inspect URL` works, else its message."""
    r = subprocess.run([str(sp), "inspect", url, "--json"], capture_output=True, text=True, env=env)
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]


def batch_digest(build, path, params, env):
    """One epoch through the Python Loader: sha256 over every batch's fields, in order."""
    code = r"""
import hashlib, json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import shardpack
h = hashlib.sha256()
n = 0
with shardpack.Loader(sys.argv[2], **json.loads(sys.argv[3])) as ld:
    for batch in ld:
        for name in sorted(batch):
            h.update(name.encode())
            h.update(np.ascontiguousarray(np.asarray(batch[name])).tobytes())
        n += 1
        batch.release()
print(json.dumps({"digest": h.hexdigest(), "batches": n}))
"""
    e = dict(env, SHARDPACK_LIBRARY=str(build))
    r = subprocess.run(["/usr/bin/python3", "-c", code, str(ROOT / "python"), path, json.dumps(params)],
                       capture_output=True, text=True, env=e)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    return json.loads(r.stdout)


def first_batch(exe, path, env, host_memory):
    """bench_first_batch on PATH: dataset_open_s, loader_open_s, first_batch_s (best of 5), the
    loaders' host_memory_bytes and the process's peak_rss_bytes."""
    r = subprocess.run([str(exe), path, "0", host_memory], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(" ")
        if k.endswith("_s"):
            out[k] = float(v)
        elif k.endswith("_bytes"):
            out[k] = int(v)
    if out.get("peak_rss_bytes") and out.get("host_memory_bytes"):
        out["rss_over_host_memory_mib"] = round((out["peak_rss_bytes"] - out["host_memory_bytes"]) / 2**20, 1)
    return out


def old_manifest(build, ds):
    """DS/manifest-1.0.spm: DS's manifest as format 1.0 wrote it (no largest blocks recorded), so
    that a loader opens it as before 1.1: every shard's index read at open."""
    import ctypes
    lib = ctypes.CDLL(str(build / "lib" / "libshardpack.so"))
    lib.sp_checksum64.restype = ctypes.c_uint64
    lib.sp_checksum64.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    b = bytearray((ds / "manifest.spm").read_bytes())
    nshards = int.from_bytes(b[24:32], "little")
    tbl = (64 + sum(int.from_bytes(b[48 + 4 * i:52 + 4 * i], "little") for i in range(3)) + 7) & ~7
    b[10:12] = (0).to_bytes(2, "little")
    for i in range(nshards):
        b[tbl + 40 * i + 32:tbl + 40 * i + 40] = bytes(8)
    b[-8:] = lib.sp_checksum64(bytes(b[:-8]), len(b) - 8).to_bytes(8, "little")
    (ds / "manifest-1.0.spm").write_bytes(bytes(b))


# ----------------------------------------------------------------------------------------------
# the peer: curl --parallel over ranged GETs

def curl_config(objects, part, repeat, per_op):
    """A curl config: one operation per ranged GET of every object, REPEAT times, each with
    PER_OP (options that `next` resets: auth, headers)."""
    lines = []
    for _ in range(repeat):
        for url, size in objects:
            for off in range(0, max(size, 1), part):
                lines += ['url = "%s"' % url, 'range = "%d-%d"' % (off, min(size, off + part) - 1),
                          'output = "/dev/null"'] + per_op + ["next"]
    return "\n".join(lines[:-1]) + "\n"


def bench_curl(objects, part, parallel, repeat, per_op, tmp, tries=3, min_seconds=None, state=None, groups=()):
    """The fastest of TRIES runs (the machine is shared: the least disturbed run counts, which
    favours the peer), each fetching every object REPEAT times; REPEAT 0: timed once, then as many
    times as fill min_seconds."""
    cfg = os.path.join(tmp, "curl.cfg")

    def once(times):
        with open(cfg, "w") as f:
            f.write(curl_config(objects, part, times, per_op))
        s0, c0 = (servers.sessions_cpu(state, groups) if groups else 0.0), children_cpu()
        t0 = time.perf_counter()
        r = subprocess.run(["curl", "-sS", "-f", "--parallel", "--parallel-immediate", "--parallel-max",
                            str(parallel), "-K", cfg], capture_output=True, text=True)
        t = time.perf_counter() - t0
        cpu[:] = [children_cpu() - c0, (servers.sessions_cpu(state, groups) if groups else 0.0) - s0]
        return t, None if r.returncode == 0 else "curl exit %d: %s" % (r.returncode, r.stderr.strip()[-300:])

    cpu = [0.0, 0.0]  # the last run's: curl's own, the servers'

    if not repeat:  # timed with more repeats until start-up is a small part, then scaled to fill min_seconds
        min_seconds = min_seconds or MIN_SECONDS
        times = 1
        while True:
            t, err = once(times)
            if err:
                return {"error": err}
            if t >= min_seconds / 4 or times >= 1000:
                break
            times *= 4
        repeat = max(1, min(4000, int(times * min_seconds / t) + 1))
    total = repeat * sum(size for _, size in objects)
    best, best_cpu = None, None
    for _ in range(tries):
        t, err = once(repeat)
        if err:
            return {"error": err}
        if best is None or t < best:
            best, best_cpu = t, list(cpu)
    out = {"bytes": total, "seconds": round(best, 3), "bytes_per_s": round(total / best), "best_of": tries,
           "epochs": repeat, "cpu_s": round(best_cpu[0], 2)}
    if groups:
        out["server_cpu_s"] = round(best_cpu[1], 2)
    return out


# ----------------------------------------------------------------------------------------------
# a link slower than the loopback: a private network namespace, its lo shaped by tbf

NETNS_MARK = "SP_REMOTE_BENCH_NETNS"


def enter_link(args):
    """With --link-rate: outside, re-run this script under `unshare -n` (a new network namespace
    with only its own lo, so nginx, Swift, curl and the loader all talk across it and nothing else
    shares it) and exit with its status; inside, bring lo up, put a tbf qdisc of the rate on it and
    return what tc reports. Exits non-zero, saying why, when any of this is not possible here."""
    def fail(why):
        sys.exit("remote_bench: --link-rate %s needs %s" % (args.link_rate, why))
    if os.environ.get(NETNS_MARK) != "1":
        for tool in ("unshare", "ip", "tc"):
            if shutil.which(tool) is None:
                fail("`%s` (util-linux / iproute2), which is not installed" % tool)
        r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
        if r.returncode != 0:
            fail("a network namespace of its own (root or CAP_SYS_ADMIN): unshare -n: %s" %
                 (r.stderr.strip() or "exit %d" % r.returncode))
        env = dict(os.environ, **{NETNS_MARK: "1"})
        r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)
        sys.exit(r.returncode)
    steps = [["ip", "link", "set", "lo", "up"],
             ["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", args.link_rate, "burst", args.link_burst,
              "latency", args.link_latency]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail("`%s` to work in the namespace: %s" % (" ".join(cmd), r.stderr.strip() or "exit %d" % r.returncode))
    shown = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True).stdout.strip()
    print("link: a private network namespace; its lo is limited by %s" % shown)
    print("      (every byte over it counts: the S3 server's own traffic (Swift's proxy <-> object server, "
          "radosgw <-> OSD) crosses the same lo, so an S3 read uses the link twice, while curl and nginx use it once)")
    return {"rate": args.link_rate, "burst": args.link_burst, "latency": args.link_latency, "qdisc": shown}


def link_counters():
    """tc's sent bytes / overlimits / drops on lo (inside the namespace)."""
    out = subprocess.run(["tc", "-s", "qdisc", "show", "dev", "lo"], capture_output=True, text=True).stdout
    return " ".join(out.split())


def latency_rule(args):
    """The fault proxy's rule for --request-latency: every request waits that long for its answer."""
    return [{"fault": "delay", "seconds": args.request_latency, "count": -1}]


def ratio(a, akey, b, bkey):
    """a[akey] / b[bkey], or None when either run failed or did not happen."""
    if not a or not b or not a.get(akey) or not b.get(bkey):
        return None
    return round(a[akey] / b[bkey], 3)


def images_ceiling(local, remote):
    """The ratio to local disk that the host's cores allow a decode-bound run over a server on the
    same host: the CPU a sample costs from local disk over what it costs remotely, the loader's and
    the server's together (both runs keeping every core busy). None without the numbers."""
    if not local or not remote or not local.get("cpu_s") or remote.get("server_cpu_s") is None \
            or not remote.get("cpu_s") or not local.get("samples") or not remote.get("samples"):
        return None
    lc = local["cpu_s"] / local["samples"]
    rc = remote["cpu_s"] / remote["samples"]
    sc = remote["server_cpu_s"] / remote["samples"]
    return (round(lc / (rc + sc), 3), "CPU a sample costs: %.0f us from local disk, %.0f us remote + %.0f us the "
            "server's on the same cores; were fetching free to the loader, the server's share alone would allow "
            "%.3f" % (1e6 * lc, 1e6 * rc, 1e6 * sc, lc / (lc + sc)))


def tokens_ceiling(ours, curl):
    """The ratio to curl that the host's cores allow the loader: every core busy at the CPU a byte
    costs it and the server, against curl's measured rate. None without the numbers."""
    need = ("cpu_s", "server_cpu_s", "read_bytes_per_s", "seconds")
    if not ours or not curl or any(ours.get(k) is None for k in need) or not curl.get("bytes_per_s") \
            or curl.get("server_cpu_s") is None:
        return None
    gb = ours["read_bytes_per_s"] * ours["seconds"] / 1e9
    cgb = curl["bytes"] / 1e9
    server = ours["server_cpu_s"] / gb
    cores = os.cpu_count()
    top = cores / (ours["cpu_s"] / gb + server) * 1e9
    return (round(min(1.0, top / curl["bytes_per_s"]), 3),
            "CPU a GB costs: ours %.2f s + the server's %.2f s, curl %.2f s + the server's %.2f s; %d cores all busy "
            "at ours would move %.2f GB/s against curl's %.2f" % (
                ours["cpu_s"] / gb, server, curl["cpu_s"] / cgb, curl["server_cpu_s"] / cgb,
                cores, top / 1e9, curl["bytes_per_s"] / 1e9))


def cache_epochs(build, path, params, env, log):
    """Two epochs through the Python Loader (params may name cache_dir/cache_size): per epoch its
    seconds, samples, the loader's remote_bytes and cache counters, and the body bytes nginx's
    access log (log, or None) shows for it."""
    code = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import shardpack
log = sys.argv[4] or None
def log_at():
    return os.path.getsize(log) if log and os.path.exists(log) else 0
def log_bytes(a, b):
    if not log:
        return None
    with open(log, "rb") as f:
        f.seek(a)
        text = f.read(b - a).decode("utf-8", "replace")
    n = 0
    for line in text.splitlines():
        parts = line.split('" ')
        if len(parts) > 1:
            f2 = parts[1].split()
            if len(f2) >= 2 and f2[1].isdigit():
                n += int(f2[1])
    return n
out = []
keys = ("remote_bytes", "cache_hits", "cache_misses", "cache_hit_bytes", "cache_evictions", "cache_bytes")
at = log_at()
with shardpack.Loader(sys.argv[2], **json.loads(sys.argv[3])) as ld:
    prev = {k: 0 for k in keys}
    for e in range(2):
        t0 = time.perf_counter()
        n = 0
        for batch in ld:
            n += len(batch.sample_ids())
            batch.release()
        dt = time.perf_counter() - t0
        st = ld.stats()
        now = log_at()
        row = {"epoch": e + 1, "seconds": round(dt, 3), "samples": n, "samples_per_s": round(n / dt, 1), "log_bytes": log_bytes(at, now)}
        row.update({k: st[k] - prev[k] for k in keys if k != "cache_bytes"})
        row["cache_bytes"] = st["cache_bytes"]
        prev = {k: st[k] for k in keys}
        at = now
        out.append(row)
print(json.dumps(out))
"""
    e = dict(env, SHARDPACK_LIBRARY=str(build))
    r = subprocess.run(["/usr/bin/python3", "-c", code, str(ROOT / "python"), path, json.dumps(params), log or ""],
                       capture_output=True, text=True, env=e)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(
        description="The loader over HTTP (nginx) and S3 (Swift's s3api or Ceph's radosgw) on loopback, against "
                    "the same loader "
                    "on local disk and against curl fetching the same objects (the module's docstring has the "
                    "details).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build"), help="the meson build directory with shardpack in it")
    ap.add_argument("--work", default="/tmp/shardpack-remote-bench",
                    help="datasets, server state and results, kept between runs")
    ap.add_argument("--images", type=int, default=2000, help="images of the generated image set")
    ap.add_argument("--tokens", type=int, default=50_000_000, help="tokens of the generated token set (2 bytes each)")
    ap.add_argument("--token-compress", default="auto", choices=("auto", "zstd", "none"),
                    help="the token set's block codec (pack --compress): none stores blocks raw, so that on a host "
                         "with few cores the tokens ratio compares fetching rather than zstd against memcpy")
    ap.add_argument("--ours-inflight", default="same",
                    help="our GETs in flight: same (as --parallel, curl's), auto (the library's default: enough GETs "
                         "of one block each to keep 64 MiB in flight, 16 to 64) or a number")
    ap.add_argument("--request-latency", type=float, default=0.0,
                    help="seconds each remote request waits for its answer (tests/remote/faultproxy.py in front of "
                         "nginx and the S3 server, for ours and curl alike): an object store's time to first byte")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="loader worker threads")
    ap.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    ap.add_argument("--epochs", type=int, default=0,
                    help="epochs of each timed run; 0: as many whole epochs as fill %g s, each side its own "
                         "(shardpack bench's rule without --epochs; curl timed once, then repeated to fill them)"
                    % MIN_SECONDS)
    ap.add_argument("--parallel", type=int, default=16, help="transfers in flight, ours and curl's")
    ap.add_argument("--part-size", default="8M", type=part_size_arg,
                    help="bytes per ranged GET, ours and curl's (a size: 8M, 512K)")
    ap.add_argument("--first-batch-shards", type=int, default=10000,
                    help="shards of the time-to-first-batch dataset (0: leave that out)")
    ap.add_argument("--first-batch-host-memory", default="64M",
                    help="host_memory of the time-to-first-batch loaders (peak RSS is reported against it)")
    ap.add_argument("--no-s3", action="store_true", help="leave the S3 server out")
    ap.add_argument("--s3-server", choices=servers.S3_SERVERS, default="swift",
                    help="the S3 server of the s3 place: Swift with s3api (Python) or Ceph's radosgw (C++, a one-node "
                         "cluster keeping the objects in memory; apt-get install --no-install-recommends "
                         + servers.PACKAGES["ceph"] + ")")
    ap.add_argument("--no-http", action="store_true", help="leave nginx out")
    ap.add_argument("--cache", default="",
                    help="comma-separated cache sizes as fractions of the dataset (e.g. 0.5,1): two epochs "
                         "without and with a cache of each size, bytes fetched and samples/s per epoch")
    ap.add_argument("--sets", default="tokens,images", help="which sets to run (tokens, images)")
    ap.add_argument("--only-cache", action="store_true",
                    help="with --cache: leave out the bench, curl, digest and first-batch runs")
    ap.add_argument("--link-rate", default="",
                    help="run everything inside a private network namespace whose loopback is limited to "
                         "this rate by a tbf qdisc (tc's units: 2400mbit, 10gbit); needs root (or CAP_SYS_ADMIN) "
                         "and unshare, ip and tc; an S3 byte crosses the link twice (Swift's proxy and object "
                         "server, radosgw and its OSD talk over it too); empty: plain loopback")
    ap.add_argument("--link-burst", default="1mb", help="with --link-rate: the tbf bucket (tc's units)")
    ap.add_argument("--link-latency", default="50ms",
                    help="with --link-rate: how long a packet may wait in the tbf queue before it is dropped")
    args = ap.parse_args()
    if args.ours_inflight not in ("same", "auto") and not (args.ours_inflight.isdigit() and int(args.ours_inflight) > 0):
        ap.error("--ours-inflight: same, auto or a number of GETs, not '%s'" % args.ours_inflight)
    link = None
    if args.link_rate:
        link = enter_link(args)
    part = size_arg(args.part_size)
    build = pathlib.Path(args.build).resolve()
    sp = build / "tools" / "shardpack"
    first = build / "bench" / "bench_first_batch"
    for f in (sp, build / "datasets" / "sp-gen-tokens", build / "datasets" / "sp-gen-imagefolder", first):
        if not f.exists():
            sys.exit("remote_bench: %s not found; build first (ninja -C %s)" % (f, build))
    if shutil.which("curl") is None:
        sys.exit("remote_bench: curl is not installed (apt-get install curl)")
    work = pathlib.Path(args.work).resolve()
    serve = work / "serve"
    state = work / "state"
    serve.mkdir(parents=True, exist_ok=True)

    # the datasets of the sets run, made once and kept
    wanted = args.sets.split(",")
    tok_bin = work / ("tokens-%d.bin" % args.tokens)
    tok_ds = serve / ("tokens-%d%s.sp" % (args.tokens, "" if args.token_compress == "auto" else "-" + args.token_compress))
    img_dir = work / ("images-%d" % args.images)
    img_ds = serve / ("images-%d.sp" % args.images)
    if "tokens" in wanted and not tok_ds.exists():
        if not tok_bin.exists():
            run([build / "datasets" / "sp-gen-tokens", "--out", tok_bin, "--tokens", args.tokens, "--seed", "1"])
        run([sp, "pack", tok_bin, "-o", tok_ds, "--seq-len", "1024", "--shard-size", "64M", "--quiet",
             "--compress", args.token_compress])
    if "images" in wanted and not img_ds.exists():
        if not img_dir.exists():
            run([build / "datasets" / "sp-gen-imagefolder", "--out", img_dir, "--count", args.images,
                 "--classes", "100", "--seed", "1"], stdout=subprocess.DEVNULL)
        run([sp, "pack", img_dir, "-o", img_ds, "--strict", "--quiet"])
    fb_ds = serve / ("first-batch-%d.sp" % args.first_batch_shards)
    if args.first_batch_shards and not fb_ds.exists():
        run([first, fb_ds, args.first_batch_shards], stdout=subprocess.DEVNULL)  # makes it
    if args.first_batch_shards:
        old_manifest(build, fb_ds)

    help_text = run([sp, "bench", "--help"], capture_output=True, text=True).stdout
    common = ["--threads", args.threads, "--batch-size", args.batch_size, "--seed", "7"]
    common += ["--epochs", args.epochs] if args.epochs else []  # else whole epochs until 2 s, bench's rule
    remote_flags = []
    if "--remote-inflight" in help_text and args.ours_inflight != "auto":
        remote_flags += ["--remote-inflight", args.parallel if args.ours_inflight == "same" else args.ours_inflight]
    if "--remote-part-size" in help_text:
        remote_flags += ["--remote-part-size", part]
    image_flags = ["--transform", "train", "--image-size", "224", "--image-layout", "nchw", "--drop-last"]
    sets = {"tokens": (tok_ds, []), "images": (img_ds, image_flags)}
    sets = {k: v for k, v in sets.items() if k in wanted}
    fractions = [float(f) for f in args.cache.split(",") if f]
    if args.only_cache:
        args.first_batch_shards = 0

    results = {"machine": "%d cores" % os.cpu_count(), "threads": args.threads, "batch_size": args.batch_size,
               "epochs": args.epochs, "parallel": args.parallel, "part_size": part, "link": link,
               "s3_server": None if args.no_s3 else args.s3_server, "token_compress": args.token_compress,
               "request_latency": args.request_latency, "ours_inflight": args.ours_inflight, "runs": {}}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    places = {"local": (lambda name, ds: str(ds), base_env)}
    # whose CPU a run over each place is charged with: the server and the latency proxy in front of it
    server_groups = {"http": ("nginx", "latency-http"), "s3": (args.s3_server, "latency-s3")}
    tmp = tempfile.mkdtemp(prefix="remote-bench-", dir=work)
    try:
        if not args.no_http:
            t0 = time.perf_counter()
            ngx = servers.start_nginx(serve, state, workers=2, access_log=bool(fractions))
            results["nginx_ready_s"] = round(time.perf_counter() - t0, 2)
            if args.request_latency:
                # every request answered request_latency seconds late: ours and curl's alike
                px = faultproxy.start_proxy(ngx["SP_TEST_HTTP_URL"], state, latency_rule(args), name="latency-http")
                ngx = dict(ngx, SP_TEST_HTTP_URL=px["SP_TEST_PROXY_URL"])
            places["http"] = (lambda name, ds: "%s/%s" % (ngx["SP_TEST_HTTP_URL"], ds.name), base_env)
        if not args.no_s3:
            t0 = time.perf_counter()
            try:
                sw = servers.start_s3(state, args.s3_server)
            except (servers.Missing, servers.StartError) as e:
                sys.exit("remote_bench: %s: %s\n%s" % (args.s3_server, e, servers._log_tails(state, 5)))
            results["%s_ready_s" % args.s3_server] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            nbytes = 0
            for ds in [ds for ds, _ in sets.values()] + ([fb_ds] if args.first_batch_shards else []):
                nbytes += servers.s3_put_dir(sw, BUCKET, ds, ds.name + "/", jobs=8, skip_same=True)[1]
            results["s3_upload_s"] = round(time.perf_counter() - t0, 2)
            results["s3_upload_bytes"] = nbytes
            if args.request_latency:  # after the upload, which goes to the server directly
                px = faultproxy.start_proxy(sw["AWS_ENDPOINT_URL"], state, latency_rule(args), name="latency-s3")
                sw = dict(sw, AWS_ENDPOINT_URL=px["SP_TEST_PROXY_URL"])
            s3_env = dict(base_env, **{k: v for k, v in sw.items() if k.startswith("AWS_")})
            places["s3"] = (lambda name, ds: "s3://%s/%s" % (BUCKET, ds.name), s3_env)
            netrc = os.path.join(tmp, "netrc")
            with open(netrc, "w") as f:
                f.write("machine 127.0.0.1 login %s password %s\n" % (sw["AWS_ACCESS_KEY_ID"],
                                                                    sw["AWS_SECRET_ACCESS_KEY"]))
        results["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
        print("load average at the start: %s (a shared machine: compare within this run)" %
              results["load_average_start"])
        # every option that changes what is measured, so that a pasted report says what it measured
        print("machine: %s, threads=%d, batch=%d, epochs=%s, parallel=%d, part=%d, s3 server=%s, "
              "token compress=%s, request latency=%gs, ours inflight=%s, link rate=%s" % (
                  results["machine"], args.threads, args.batch_size,
                  args.epochs or "whole ones filling %g s" % MIN_SECONDS, args.parallel, part,
                  results["s3_server"] or "none", args.token_compress, args.request_latency, args.ours_inflight,
                  args.link_rate or "loopback"))
        for k in ("nginx_ready_s", "swift_ready_s", "ceph_ready_s", "s3_upload_s"):
            if k in results:
                print("%s %s" % (k, results[k]))

        # probed with a dataset this run uploaded (the S3 bucket may hold no other)
        probe = next(iter(sets.values()), (fb_ds, None))[0]
        cannot = {}
        for place, (url_of, env) in places.items():
            if place != "local":
                why = reads_urls(sp, url_of(probe.name, probe), env)
                if why:
                    cannot[place] = why
                    print("shardpack cannot read the URL (%s: %s)" % (place, why))

        for name, (ds, flags) in sets.items():
            files = dataset_files(ds)
            warm(files)
            for place, (url_of, env) in places.items():
                if place == "local" or place in cannot or not fractions:
                    continue
                size = sum(f.stat().st_size for f in files)
                params = {"seed": 7, "batch_size": args.batch_size, "epochs": 2, "threads": args.threads,
                          "remote_inflight": args.parallel, "remote_part_size": part}
                if name == "images":
                    params.update(transform="train", image_size=224, image_layout="nchw", drop_last=True)
                log = os.path.join(state, "logs", "nginx-access.log") if place == "http" else None
                for frac in [0.0] + fractions:
                    p = dict(params)
                    if frac:
                        cdir = os.path.join(tmp, "cache-%s-%s-%g" % (name, place, frac))
                        p.update(cache_dir=cdir, cache_size=int(frac * size))
                    key = "%s_%s_cache_%g" % (name, place, frac)
                    load = os.getloadavg()[0]
                    res = cache_epochs(build, url_of(name, ds), p, env, log)
                    results["runs"][key] = {"dataset_bytes": size, "load_avg_1m": round(load, 2), "epochs": res}
                    print("cache %-24s %s" % (key, json.dumps(results["runs"][key])))
            if args.only_cache:
                continue
            for place, (url_of, env) in places.items():
                key = "%s_%s" % (name, place)
                if place in cannot:
                    results["runs"][key] = {"error": "shardpack cannot read the URL: " + cannot[place]}
                else:
                    results["runs"][key] = bench_ours(sp, url_of(name, ds), common + flags, remote_flags, env,
                                                      state, server_groups.get(place, ()))
                print("ours  %-14s %s" % (key, json.dumps(results["runs"][key])))
            # the I/O peer over each remote place: the same objects, the same parallelism
            for place in places:
                if place == "local":
                    continue
                if place == "http":
                    objects = [("%s/%s/%s" % (ngx["SP_TEST_HTTP_URL"], ds.name, f.name), f.stat().st_size) for f in files]
                    per_op = []
                else:
                    objects = [("%s/%s/%s/%s" % (sw["AWS_ENDPOINT_URL"], BUCKET, ds.name, f.name), f.stat().st_size)
                               for f in files]
                    per_op = ['netrc-file = "%s"' % netrc, 'aws-sigv4 = "aws:amz:%s:s3"' % sw["AWS_REGION"],
                              'header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"']
                key = "%s_%s_curl" % (name, place)
                results["runs"][key] = bench_curl(objects, part, args.parallel, args.epochs, per_op, tmp,
                                                  state=state, groups=server_groups[place])
                print("curl  %-14s %s" % (key, json.dumps(results["runs"][key])))
            # the same batches from everywhere
            params = {"seed": 7, "batch_size": args.batch_size, "epochs": 1, "threads": args.threads}
            if name == "images":
                params.update(transform="train", image_size=224, image_layout="nchw", drop_last=True)
            digests = {}
            for place, (url_of, env) in places.items():
                if place in cannot:
                    continue
                digests[place] = batch_digest(build, url_of(name, ds), params, env)
            results["runs"]["%s_digests" % name] = digests
            ok = [d.get("digest") for d in digests.values()]
            same = len(ok) > 1 and None not in ok and len(set(ok)) == 1
            print("batches %-8s %s %s" % (name, "identical" if same else ("only local" if len(ok) == 1 else "DIFFER"),
                                         json.dumps(digests)))
        if args.first_batch_shards:
            warm(dataset_files(fb_ds))
            for place, (url_of, env) in places.items():
                key = "first_batch_%s" % place
                if place in cannot:
                    results["runs"][key] = {"error": "shardpack cannot read the URL: " + cannot[place]}
                else:
                    results["runs"][key] = first_batch(first, url_of("first-batch", fb_ds), env,
                                                       args.first_batch_host_memory)
                print("first %-14s %s" % (key, json.dumps(results["runs"][key])))
                # before 1.1: the same dataset through a manifest that records no block sizes
                key += "_old_manifest"
                if place not in cannot:
                    results["runs"][key] = first_batch(first, url_of("first-batch", fb_ds) + "/manifest-1.0.spm",
                                                       env, args.first_batch_host_memory)
                    print("first %-14s %s" % (key, json.dumps(results["runs"][key])))
    finally:
        servers.stop(state)
        shutil.rmtree(tmp, ignore_errors=True)

    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print("load average at the end: %s" % results["load_average_end"])
    if link:
        link["counters_end"] = link_counters()
        print("link at the end: %s" % link["counters_end"])
    runs = results["runs"]
    lines = []
    for place in ("http", "s3"):
        if place not in places or args.only_cache:
            continue
        if "images" in sets:
            r = ratio(runs.get("images_" + place), "samples_per_s", runs.get("images_local"), "samples_per_s")
            lines.append(("images_%s_vs_local" % place, r, "samples/s, target >= 0.9"))
            c = images_ceiling(runs.get("images_local"), runs.get("images_" + place))
            if c:
                lines.append(("images_%s_cpu_ceiling" % place, c[0], c[1]))
        if "tokens" not in sets:
            continue
        r = ratio(runs.get("tokens_" + place), "read_bytes_per_s", runs.get("tokens_%s_curl" % place), "bytes_per_s")
        lines.append(("tokens_%s_vs_curl" % place, r, "read bytes/s, target >= 0.9"))
        c = tokens_ceiling(runs.get("tokens_" + place), runs.get("tokens_%s_curl" % place))
        if c:
            lines.append(("tokens_%s_cpu_ceiling" % place, c[0], c[1]))
        r = ratio(runs.get("tokens_" + place), "read_bytes_per_s", runs.get("tokens_local"), "read_bytes_per_s")
        lines.append(("tokens_%s_vs_local" % place, r, "read bytes/s; local disk is the ceiling on a small host"))
    for place in places:
        fb = runs.get("first_batch_" + place, {}).get("first_batch_s")
        if args.first_batch_shards:
            lines.append(("first_batch_%s_s" % place, fb, "%d shards, target < 1 s" % args.first_batch_shards))
            old = runs.get("first_batch_%s_old_manifest" % place, {}).get("first_batch_s")
            lines.append(("first_batch_%s_old_manifest_s" % place, old, "the same through a 1.0 manifest: "
                          "every index read at open, as before"))
            rss = runs.get("first_batch_" + place, {}).get("rss_over_host_memory_mib")
            lines.append(("first_batch_%s_rss_over_host_memory_mib" % place, rss, "peak RSS - host_memory %s, "
                          "target <= 24" % args.first_batch_host_memory))
    results["ratios"] = {k: v for k, v, _ in lines}
    with open(work / "remote_bench.json", "w") as f:
        json.dump(results, f, indent=1)
    for k, v, what in lines:
        print("%s %s  (%s)" % (k, "n/a (not run, or a run failed: see above)" if v is None else "%.3f" % v, what))
    # a ratio of runs of a few hundredths of a second is start-up and scheduling noise, not a rate: say so
    short = sorted(k for k, r in runs.items() if isinstance(r, dict) and isinstance(r.get("seconds"), (int, float))
                   and r["seconds"] < 1.0)
    if short and lines:
        print("note: %s took under 1 s each (%s); the ratios of such short runs are noise: pass more --tokens, "
              "--images or --epochs" % (", ".join(short), ", ".join("%.2f s" % runs[k]["seconds"] for k in short)))
    print("raw results: %s" % (work / "remote_bench.json"))


if __name__ == "__main__":
    main()
