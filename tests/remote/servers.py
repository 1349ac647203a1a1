#!/usr/bin/env python3
"""Real servers on 127.0.0.1 for the remote tests and benchmarks: nginx (HTTP and HTTPS, byte
ranges, basic and bearer auth), OpenStack Swift with its s3api middleware (an S3 endpoint) and,
optionally, Ceph's radosgw on a one-node Ceph cluster (another S3 endpoint, in C++).

Everything a start writes - configuration, certificates, rings, storage, logs, pids - lives in the
state directory given; `stop` ends by pid what was started there and removes nothing outside it.

    servers.py nginx start --root DIR --state STATE [--workers N]
    servers.py swift start --state STATE
    servers.py ceph start --state STATE
    servers.py s3 start --state STATE          (Swift, or Ceph when SP_TEST_S3_SERVER=ceph)
    servers.py s3 mb --state STATE BUCKET
    servers.py s3 put-dir --state STATE [--prefix P] [--jobs N] [--skip-same] BUCKET DIR   (files go to P/...)
    servers.py env --state STATE
    servers.py stop --state STATE

`start` waits until every port answers, then prints shell lines (`eval "$(servers.py ...)"`):
SP_TEST_HTTP_URL, SP_TEST_HTTPS_URL, SP_TEST_CA, ... for nginx; AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, ... for Swift and Ceph. The same lines are
kept in STATE/nginx.env, STATE/swift.env and STATE/ceph.env; `s3 mb` and `s3 put-dir` use the S3
server running from STATE. A missing package exits 77 with the reason; other failures exit 1 after
stopping what was started.

From Python: `with nginx_server(root, state) as env:`, `with swift_server(state) as env:` and
`with ceph_server(state) as env:` give the same variables as a dict and stop the servers on exit;
s3_request, s3_make_bucket and s3_put_dir sign their requests (SigV4) with the standard library
alone. Besides the packages (nginx-light, openssl, swift, swift-proxy, swift-object,
swift-container, swift-account; for Ceph ceph-mon, ceph-osd, radosgw, ceph-common) only this file
and sp_swift_cache.py (the proxy's in-process cache, in place of memcached) are needed; the Swift
processes run under the Python that Debian's swift scripts name (/usr/bin/python3), so any python3
may run this file.
"""

import argparse
import contextlib
import datetime
import hashlib
import hmac
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

SKIP = 77
HOST = "127.0.0.1"

# Credentials of the test servers. They guard nothing but loopback servers made for one run.
HTTP_USER = "shardpack"
HTTP_PASSWORD = "sp-test-password"
HTTP_TOKEN = "sp-test-token"
S3_ACCESS_KEY = "test:tester"  # Swift's tempauth account:user; the colon is part of the key
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"


class Missing(Exception):
    """A package the server needs is not installed (exit 77)."""


class StartError(Exception):
    """A server did not come up."""


# ----------------------------------------------------------------------------------------------
# Processes: started in their own session, recorded by pid and start time, stopped by pid.

def _proc_fields(pid):
    """The fields of /proc/PID/stat after "pid (comm) " (field 3 first), or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def _proc_stat(pid):
    """(state, session id, start time) of a process from /proc/PID/stat, or None if it is gone."""
    rest = _proc_fields(pid)
    if rest is None:
        return None
    return rest[0], int(rest[3]), int(rest[19])  # state (3), session (6), starttime (22)


def _processes():
    """(pid, its /proc/PID/stat fields as _proc_fields gives them) of every process now."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            rest = _proc_fields(int(name))
            if rest is not None:
                yield int(name), rest


def _alive(pid, starttime=None):
    """True while the process runs (a zombie counts as gone), and is the one recorded."""
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[2] == starttime


def _session_members(sid):
    return [pid for pid, rest in _processes() if int(rest[3]) == sid and rest[0] not in ("Z", "X")]


def sessions_cpu(state, groups):
    """CPU seconds used so far by the servers of GROUPS started from STATE (nginx, swift, ceph, a
    fault proxy's name): every process of their sessions (each is started as a session leader), with
    the children they have reaped."""
    sessions = {pid for g, _, pid, _ in _recorded(state) if g in groups}
    # utime, stime, cutime, cstime: fields 14-17
    ticks = sum(sum(int(x) for x in rest[11:15]) for _, rest in _processes() if int(rest[3]) in sessions)
    return ticks / os.sysconf("SC_CLK_TCK")


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _pids_file(state):
    return os.path.join(state, "pids")


def _record(state, group, name, pid):
    st = _proc_stat(pid)
    with open(_pids_file(state), "a") as f:
        f.write("%s %s %d %d\n" % (group, name, pid, st[2] if st else 0))


def _recorded(state, group=None):
    try:
        with open(_pids_file(state)) as f:
            rows = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [(g, n, int(p), int(t)) for g, n, p, t in rows if group is None or g == group]


def _spawn(state, group, name, argv, env=None):
    """Starts argv as a session leader, output to STATE/logs/NAME.log; records its pid."""
    logs = os.path.join(state, "logs")
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, name + ".log"), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env, close_fds=True)
    _record(state, group, name, proc.pid)
    return proc


def stop(state, group=None, bound=10.0):
    """Stops what was started in STATE (one group, or all): SIGTERM to each recorded process and
    to whatever is left in its session once it is gone, SIGKILL to everything still there after
    BOUND seconds, then waits until none runs (a zombie counts as gone; our own children are
    reaped). Returns the names of the servers that had to be killed."""
    rows = _recorded(state, group)
    termed, killed = set(), []
    deadline = time.monotonic() + bound
    while True:
        running = {}
        for g, name, pid, t in rows:
            _reap(pid)
            st = _proc_stat(pid)
            if st is not None and st[2] != t:
                # The pid is another process's now: ours is gone, and so is everything of its
                # session (Linux gives out no pid still in use as a session id).
                continue
            procs = set(_session_members(pid))  # a session's id is its leader's pid
            if _alive(pid, t):
                procs.add(pid)
            if procs:
                running[name] = (pid, procs)
        if not running:
            break
        for name, (pid, procs) in running.items():
            if time.monotonic() > deadline:
                if name not in killed:
                    killed.append(name)
                targets, sig = procs, signal.SIGKILL
            else:
                # the leader first; what stays in its session after it (nginx's workers) next
                targets = [pid] if pid in procs else procs
                targets, sig = [p for p in targets if p not in termed], signal.SIGTERM
            for p in targets:
                termed.add(p)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
        time.sleep(0.02)
    for _, _, pid, _ in rows:
        # one that turned zombie after its _reap above counts as gone: reap it now, or a parent
        # that exits leaves it to an init that may never reap it
        _reap(pid)
    keep = [r for r in _recorded(state) if group is not None and r[0] != group]
    if keep:
        with open(_pids_file(state), "w") as f:
            for g, n, p, t in keep:
                f.write("%s %s %d %d\n" % (g, n, p, t))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_pids_file(state))
    return killed


# ----------------------------------------------------------------------------------------------
# Ports

def free_ports(n):
    """n distinct ports free on 127.0.0.1 now (bound, read, released together)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port):
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def _wait_ports(procs, ports, timeout, what):
    """Waits until every port accepts a connection; fails early if a process exits."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        for name, proc in procs:
            if proc.poll() is not None:
                raise StartError("%s exited with status %s before listening" % (name, proc.returncode))
        pending = [p for p in pending if not _port_open(p)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StartError("%s: ports %s not answering after %.0f s" % (what, pending, timeout))
        time.sleep(0.02)


def _log_tails(state, lines=15):
    out = []
    logs = os.path.join(state, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        with open(os.path.join(logs, name), errors="replace") as f:
            tail = f.read().splitlines()[-lines:]
        if tail:
            out.append("--- %s\n%s" % (name, "\n".join(tail)))
    return "\n".join(out)


def _write_env(state, group, env):
    with open(os.path.join(state, group + ".env"), "w") as f:
        f.write(format_env(env))


def _s3_ready(state, group, endpoint, key, secret, procs, t0):
    """The variables an S3 client reads for a server of group (swift, ceph) now answering at
    endpoint, with SP_TEST_<GROUP>_PIDS and _READY_S; written to STATE/GROUP.env and returned."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": S3_REGION,
        "AWS_DEFAULT_REGION": S3_REGION,
        "SP_TEST_%s_PIDS" % group.upper(): " ".join(str(p.pid) for _, p in procs),
        "SP_TEST_%s_READY_S" % group.upper(): "%.2f" % (time.monotonic() - t0),
    }
    _write_env(state, group, env)
    return env


def format_env(env):
    return "".join("%s=%s\n" % (k, shlex.quote(str(v))) for k, v in env.items())


def read_env(state, group):
    """The variables a start printed, from STATE/GROUP.env."""
    env = {}
    with open(os.path.join(state, group + ".env")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


# ----------------------------------------------------------------------------------------------
# Packages

PACKAGES = {"nginx": "nginx-light", "openssl": "openssl", "curl": "curl",
            "swift": "swift swift-proxy swift-object swift-container swift-account",
            "ceph": "ceph-mon ceph-osd radosgw ceph-common"}


def require(what):
    """The path of a program the servers or tests need ('nginx', 'openssl', 'curl'), for 'swift'
    the interpreter command of Swift's servers, for 'ceph' radosgw's path (having checked Ceph's
    other programs too); raises Missing naming the package."""
    if what == "swift":
        return _swift_python()
    if what == "ceph":
        return _ceph_programs()["radosgw"]
    found = shutil.which(what) or next((p for p in ("/usr/sbin/" + what, "/usr/bin/" + what)
                                        if os.access(p, os.X_OK)), None)
    if found is None:
        raise Missing("%s not found (apt-get install %s)" % (what, PACKAGES[what]))
    return found


def test_main(cases, needs, argv=None):
    """main() of a remote test program: `PROG PART` runs the unittest case cases[PART] after
    checking that needs[PART] are installed (exit 77 with the reason if one is not)."""
    argv = sys.argv if argv is None else argv
    which = argv[1] if len(argv) > 1 else ""
    if which not in cases:
        print("usage: %s %s" % (os.path.basename(argv[0]), "|".join(cases)), file=sys.stderr)
        return 2
    try:
        for what in needs.get(which, ()):
            require(what)
    except Missing as e:
        print("skip: %s" % e)
        return SKIP
    import unittest
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(cases[which])
    return 0 if unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite).wasSuccessful() else 1


# ----------------------------------------------------------------------------------------------
# nginx

def _make_certs(d):
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost (EC P-256), signed by it."""
    os.makedirs(d, exist_ok=True)
    ca_key, ca, key, csr, crt = (os.path.join(d, n) for n in
                                 ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        ["openssl", "req", "-x509"] + ec + ["-days", "7", "-subj", "/CN=shardpack test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", ca_key, "-out", ca],
        ["openssl", "req", "-new"] + ec + ["-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "7", "-extfile", ext, "-out", crt],
    ):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            raise StartError("%s failed: %s" % (" ".join(argv[:3]), r.stderr.strip()))
    return ca, crt, key


NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {state}/nginx.pid;
error_log {state}/logs/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    # nginx's combined format with the Range asked for last, so that a test can tell which bytes each GET asked for
    log_format sp_range '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent" "$http_range"';
    access_log {access_log};
    client_body_temp_path {state}/tmp/body;
    proxy_temp_path {state}/tmp/proxy;
    fastcgi_temp_path {state}/tmp/fastcgi;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 60;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        server_name 127.0.0.1 localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
        location / {{ }}
        location /basic/ {{
            alias {root}/;
            auth_basic "shardpack test";
            auth_basic_user_file {state}/htpasswd;
        }}
        location /bearer/ {{
            alias {root}/;
            add_header WWW-Authenticate 'Bearer realm="shardpack test"' always;
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
        }}
    }}
}}
"""


def start_nginx(root, state, workers=1, access_log=False, timeout=20.0):
    """Starts nginx serving ROOT over HTTP and HTTPS on free ports of 127.0.0.1 and returns its
    variables: SP_TEST_HTTP_URL, SP_TEST_HTTPS_URL (the same files at /, under /basic/ with
    SP_TEST_HTTP_USER and SP_TEST_HTTP_PASSWORD, under /bearer/ with SP_TEST_HTTP_TOKEN),
    SP_TEST_CA (the CA that signed the server's certificate), SP_TEST_NGINX_PID."""
    nginx = require("nginx")
    require("openssl")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise StartError("%s is not a directory" % root)
    state = os.path.abspath(state)
    os.makedirs(os.path.join(state, "logs"), exist_ok=True)
    if any(_alive(p, t) for _, _, p, t in _recorded(state, "nginx")):
        raise StartError("nginx already runs from %s (servers.py stop --state %s)" % (state, state))
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(state, "tmp", d), exist_ok=True)
    ca, cert, key = _make_certs(os.path.join(state, "tls"))
    with open(os.path.join(state, "htpasswd"), "w") as f:
        f.write("%s:{PLAIN}%s\n" % (HTTP_USER, HTTP_PASSWORD))
    last = None
    for _ in range(3):  # another process may take a port between free_ports and nginx's bind
        http_port, https_port = free_ports(2)
        conf = os.path.join(state, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(
                user="user root;\n" if os.geteuid() == 0 else "", workers=int(workers),
                state=state, root=root, cert=cert, key=key, token=HTTP_TOKEN,
                http_port=http_port, https_port=https_port,
                access_log=os.path.join(state, "logs", "nginx-access.log") + " sp_range" if access_log else "off"))
        proc = _spawn(state, "nginx", "nginx", [nginx, "-e", os.path.join(state, "logs", "nginx-error.log"),
                                                "-p", state, "-c", conf])
        try:
            _wait_ports([("nginx", proc)], [http_port, https_port], timeout, "nginx")
            break
        except StartError as e:
            last = e
            stop(state, "nginx")
            proc.wait()
            with open(os.path.join(state, "logs", "nginx-error.log"), errors="replace") as f:
                if "Address already in use" not in f.read():
                    raise
    else:
        raise last
    env = {
        "SP_TEST_HTTP_URL": "http://%s:%d" % (HOST, http_port),
        "SP_TEST_HTTPS_URL": "https://%s:%d" % (HOST, https_port),
        "SP_TEST_CA": ca,
        "SP_TEST_HTTP_ROOT": root,
        "SP_TEST_HTTP_USER": HTTP_USER,
        "SP_TEST_HTTP_PASSWORD": HTTP_PASSWORD,
        "SP_TEST_HTTP_TOKEN": HTTP_TOKEN,
        "SP_TEST_NGINX_PID": proc.pid,
    }
    _write_env(state, "nginx", env)
    return env


# ----------------------------------------------------------------------------------------------
# Swift with s3api

SWIFT_CONF = """\
[swift-hash]
swift_hash_path_suffix = shardpack-test
swift_hash_path_prefix = shardpack-test
[storage-policy:0]
name = Policy-0
default = yes
"""

SWIFT_COMMON = """\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
swift_dir = {etc}
devices = {devices}
mount_check = false
log_name = {name}
log_level = WARNING
"""

SWIFT_BACKEND = SWIFT_COMMON + """\
[pipeline:main]
pipeline = {name}
[app:{name}]
use = egg:swift#{kind}
# 1 MiB reads and sends instead of 64 KiB: the object server's Python then costs a sixteenth of the
# calls a byte, which on loopback (server and client on the same cores) is CPU the loader gets back
disk_chunk_size = 1048576
network_chunk_size = 1048576
"""

SWIFT_PROXY = SWIFT_COMMON + """\
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
# as the backends' chunk sizes above: the proxy relays an object 1 MiB a call
object_chunk_size = 1048576
client_chunk_size = 1048576
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {secret} .admin
[filter:s3api]
use = egg:swift#s3api
location = {region}
[filter:cache]
paste.filter_factory = sp_swift_cache:filter_factory
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
"""

# Runs one Swift server with swift.conf read from our etc directory instead of /etc/swift. The
# proxy's process first builds the three one-replica rings with Swift's RingBuilder (the CLI takes
# seconds; here it costs no Python start-up of its own, and the backends start meanwhile).
SWIFT_LAUNCH = """\
import sys
conf, name, swift_conf = sys.argv[1:4]
from swift.common import utils
utils.SWIFT_CONF_FILE = swift_conf
utils.HASH_PATH_SUFFIX = utils.HASH_PATH_PREFIX = b''
utils.validate_configuration()
from swift.common import storage_policy
storage_policy.reload_storage_policies()
kw = {'verbose': True}  # log to stderr (our log file) besides syslog
if name == 'proxy-server':
    import os
    from swift.common.ring import RingBuilder
    for kind, port in zip(('account', 'container', 'object'), sys.argv[4:7]):
        b = RingBuilder(8, 1, 1)
        b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port),
                   'device': 'd1', 'weight': 1.0, 'meta': ''})
        b.rebalance()
        b.get_ring().save(os.path.join(os.path.dirname(swift_conf), kind + '.ring.gz'))
elif name == 'object-server':
    from swift.obj import server
    kw['global_conf_callback'] = server.global_conf_callback
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(conf, name, **kw))
"""


def _swift_python():
    """The interpreter Debian's swift scripts run under (their #! line), which has swift."""
    script = shutil.which("swift-proxy-server") or "/usr/bin/swift-proxy-server"
    for pkg in ("swift-proxy-server", "swift-object-server", "swift-container-server",
                "swift-account-server"):
        if shutil.which(pkg) is None and not os.access("/usr/bin/" + pkg, os.X_OK):
            raise Missing("%s not found (apt-get install %s)" % (pkg, PACKAGES["swift"]))
    with open(script, "rb") as f:
        line = f.readline().decode(errors="replace")
    argv = shlex.split(line[2:]) if line.startswith("#!") else ["python3"]
    if argv and os.path.basename(argv[0]) == "env":
        argv = argv[1:]
    return argv


def _check_xattr(path):
    probe = os.path.join(path, ".xattr-probe")
    open(probe, "w").close()
    try:
        os.setxattr(probe, "user.shardpack", b"1")
    except OSError as e:
        raise StartError("%s: no user extended attributes (%s); Swift's object server needs them: "
                         "use a state directory on ext4 or xfs" % (path, os.strerror(e.errno)))
    finally:
        os.unlink(probe)


def start_swift(state, timeout=60.0):
    """Starts Swift (account, container, object and proxy servers, one process each, workers = 0)
    with the s3api middleware and tempauth on free ports of 127.0.0.1, storage under
    STATE/swift/devices; returns AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_REGION (and AWS_DEFAULT_REGION), SP_TEST_SWIFT_PIDS and SP_TEST_SWIFT_READY_S."""
    t0 = time.monotonic()
    py = _swift_python()
    state = os.path.abspath(state)
    os.makedirs(os.path.join(state, "logs"), exist_ok=True)
    if any(_alive(p, t) for _, _, p, t in _recorded(state, "swift")):
        raise StartError("swift already runs from %s (servers.py stop --state %s)" % (state, state))
    etc = os.path.join(state, "swift", "etc")
    devices = os.path.join(state, "swift", "devices")
    os.makedirs(etc, exist_ok=True)
    os.makedirs(os.path.join(devices, "d1"), exist_ok=True)
    _check_xattr(os.path.join(devices, "d1"))
    swift_conf = os.path.join(etc, "swift.conf")
    with open(swift_conf, "w") as f:
        f.write(SWIFT_CONF)
    ports = dict(zip(("account", "container", "object", "proxy"), free_ports(4)))
    user = __import__("pwd").getpwuid(os.geteuid()).pw_name
    # the proxy's cache filter (sp_swift_cache.py) lies beside this file
    penv = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    penv["PYTHONPATH"] = here + (os.pathsep + penv["PYTHONPATH"] if penv.get("PYTHONPATH") else "")
    procs = []
    try:
        for kind in ("account", "container", "object", "proxy"):
            name = kind + "-server"
            conf = os.path.join(etc, name + ".conf")
            template = SWIFT_PROXY if kind == "proxy" else SWIFT_BACKEND
            with open(conf, "w") as f:
                f.write(template.format(port=ports[kind], user=user, etc=etc, devices=devices,
                                        name=name, kind=kind, secret=S3_SECRET_KEY, region=S3_REGION))
            procs.append((name, _spawn(state, "swift", "swift-" + kind,
                                       py + ["-c", SWIFT_LAUNCH, conf, name, swift_conf]
                                       + [str(ports[k]) for k in ("account", "container", "object")],
                                       env=penv)))
        _wait_ports(procs, list(ports.values()), timeout, "swift")
        endpoint = "http://%s:%d" % (HOST, ports["proxy"])
        # Every backend listens; the proxy must now answer an S3 request end to end.
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = s3_request("GET", endpoint + "/", S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION)
            if status == 200:
                break
            if status != 503 or time.monotonic() > deadline:
                raise StartError("swift: listing buckets answers %d: %s" % (status, body[:200]))
            time.sleep(0.05)
    except BaseException:
        stop(state, "swift")
        raise
    return _s3_ready(state, "swift", endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, procs, t0)


# ----------------------------------------------------------------------------------------------
# Ceph: a one-node cluster (a monitor, one OSD keeping objects in memory) and radosgw

# The S3 user radosgw gets. Another key than Swift's: radosgw's keys are its own strings, and
# one without a colon also passes through curl's --user.
CEPH_ACCESS_KEY = "shardpack-test"
CEPH_SECRET_KEY = "sp-test-secret"

# Everything on 127.0.0.1 and under STATE/ceph. Only the messenger v2 protocol: the monitor then
# listens on its one port, and the OSD binds no v1 ports beside its v2 ones (it takes free ports of
# 6800-7300, its default range). memstore keeps the objects in the OSD's memory: nothing to
# format, nothing to fsync; the device size is only what the OSD reports as its capacity (a
# benchmark's few hundred MB stay far from the full ratio). The proposal interval of 1 s made
# each of radosgw's seven pools wait a second at start-up. No manager: radosgw and the clients
# need none, and it would take ~300 MB; the autoscaler it runs is off.
CEPH_CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
keyring = {d}/keyring
run dir = {d}/run
admin socket =
pid file =
crash dir = {d}/crash
log file = {logs}/$name.log
log to stderr = false
err to stderr = true
mon cluster log file = {logs}/ceph-cluster.log
mon data = {d}/mon
osd data = {d}/osd
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
osd fast shutdown notify mon = false
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/rgw
rgw zonegroup = default
rgw zone = default
rgw exit timeout secs = 1
"""


def _ceph_programs():
    """{name: path} of the Ceph programs start_ceph runs; raises Missing naming the packages."""
    out = {}
    for name in ("ceph-authtool", "monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw-admin", "radosgw"):
        out[name] = shutil.which(name) or next((p for p in ("/usr/bin/" + name, "/usr/sbin/" + name)
                                                if os.access(p, os.X_OK)), None)
        if out[name] is None:
            raise Missing("%s not found (apt-get install --no-install-recommends %s)" % (name, PACKAGES["ceph"]))
    return out


def _ceph_exited(procs, what):
    for name, proc in procs:
        if proc.poll() is not None:
            raise StartError("ceph: %s exited with status %s (while %s)" % (name, proc.returncode, what))


def _ceph_run(argv, deadline, what, procs=()):
    """Runs one of Ceph's tools to its end; raises StartError with its output if it fails, and
    ends it if it is still waiting at DEADLINE or once one of PROCS (the daemons it waits for:
    Ceph's clients retry a daemon that is gone without end) has exited."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            try:
                out, err = p.communicate(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                _ceph_exited(procs, what)
                if time.monotonic() > deadline:
                    raise StartError("ceph: %s did not finish in time" % what)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    if p.returncode != 0:
        _ceph_exited(procs, what)
        raise StartError("ceph: %s failed (exit %d): %s" % (what, p.returncode, (err or out).strip()[-500:]))
    return out


def start_ceph(state, timeout=60.0):
    """Starts a one-node Ceph cluster - a monitor, one OSD (memstore: the objects in its memory) -
    and radosgw serving S3 on a free port of 127.0.0.1, with an S3 user of a fixed key; all its
    state goes to STATE/ceph, made afresh at each start. Returns AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (and AWS_DEFAULT_REGION),
    SP_TEST_CEPH_PIDS and SP_TEST_CEPH_READY_S, as start_swift does for Swift."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    tools = _ceph_programs()
    state = os.path.abspath(state)
    logs = os.path.join(state, "logs")
    os.makedirs(logs, exist_ok=True)
    if any(_alive(p, t) for _, _, p, t in _recorded(state, "ceph")):
        raise StartError("ceph already runs from %s (servers.py stop --state %s)" % (state, state))
    # a new cluster each time (another fsid, new keys): nothing of a run before is reused, and a
    # run killed half-way leaves nothing that a later start has to make sense of
    d = os.path.join(state, "ceph")
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("run", "crash", "mon", "osd", "rgw"):
        os.makedirs(os.path.join(d, sub))
    fsid = str(__import__("uuid").uuid4())
    mon_port, rgw_port = free_ports(2)
    conf = os.path.join(d, "ceph.conf")
    with open(conf, "w") as f:
        f.write(CEPH_CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=rgw_port, d=d, logs=logs))
    c = ["-c", conf]
    keyring = os.path.join(d, "keyring")
    # One keyring for every daemon and tool; the monitor takes all of it into its auth database at
    # --mkfs, so the OSD's and radosgw's keys exist before they first connect.
    for i, (name, caps) in enumerate((
            ("mon.", ["mon", "allow *"]),
            ("client.admin", ["mon", "allow *", "osd", "allow *", "mgr", "allow *"]),
            ("osd.0", ["mon", "allow profile osd", "mgr", "allow profile osd", "osd", "allow *"]),
            ("client.rgw", ["mon", "allow rw", "osd", "allow rwx", "mgr", "allow rw"]))):
        argv = [tools["ceph-authtool"], keyring, "--gen-key", "-n", name] + (["--create-keyring"] if i == 0 else [])
        for j in range(0, len(caps), 2):
            argv += ["--cap", caps[j], caps[j + 1]]
        _ceph_run(argv, deadline, "ceph-authtool " + name)
    monmap = os.path.join(d, "monmap")
    _ceph_run([tools["monmaptool"], "--create", "--fsid", fsid, "--addv", "a",
               "[v2:%s:%d]" % (HOST, mon_port), monmap], deadline, "monmaptool")
    osd_uuid = str(__import__("uuid").uuid4())
    procs = []
    try:
        _ceph_run([tools["ceph-mon"]] + c + ["-i", "a", "--mkfs", "--monmap", monmap, "--keyring", keyring],
                  deadline, "ceph-mon --mkfs")
        procs.append(("ceph-mon", _spawn(state, "ceph", "ceph-mon", [tools["ceph-mon"]] + c + ["-i", "a", "-f"])))
        # the OSD's store needs no monitor (the monmap says whose cluster it is): made meanwhile
        _ceph_run([tools["ceph-osd"]] + c + ["-i", "0", "--mkfs", "--osd-uuid", osd_uuid, "--monmap", monmap],
                  deadline, "ceph-osd --mkfs")
        _wait_ports(procs, [mon_port], max(1.0, deadline - time.monotonic()), "ceph-mon")
        _ceph_run([tools["ceph"]] + c + ["osd", "new", osd_uuid, "0"], deadline, "ceph osd new", procs)
        procs.append(("ceph-osd", _spawn(state, "ceph", "ceph-osd", [tools["ceph-osd"]] + c + ["-i", "0", "-f"])))
        # radosgw-admin makes the default zone and its pools (waiting for the OSD to come up);
        # radosgw starts after it, since one starting meanwhile finds the zone half made and exits
        _ceph_run([tools["radosgw-admin"]] + c + ["user", "create", "--uid", "shardpack", "--display-name",
                                                  "shardpack tests", "--access-key", CEPH_ACCESS_KEY,
                                                  "--secret-key", CEPH_SECRET_KEY],
                  deadline, "radosgw-admin user create", procs)
        for attempt in range(3):
            rgw = _spawn(state, "ceph", "radosgw", [tools["radosgw"]] + c + ["-n", "client.rgw", "-f"])
            procs.append(("radosgw", rgw))
            try:
                _wait_ports(procs, [rgw_port], max(1.0, deadline - time.monotonic()), "radosgw")
                break
            except StartError:
                # 98, EADDRINUSE: the port free_ports chose was taken since (by another test's
                # outgoing connection, say): again on another one
                if rgw.poll() != 98 or attempt == 2:
                    raise
                procs.pop()
                old, rgw_port = rgw_port, free_ports(1)[0]
                with open(conf) as f:
                    text = f.read()
                with open(conf, "w") as f:
                    f.write(text.replace("endpoint=%s:%d" % (HOST, old), "endpoint=%s:%d" % (HOST, rgw_port)))
        endpoint = "http://%s:%d" % (HOST, rgw_port)
        while True:
            status, _, body = s3_request("GET", endpoint + "/", CEPH_ACCESS_KEY, CEPH_SECRET_KEY, S3_REGION)
            if status == 200:
                break
            _ceph_exited(procs, "waiting for radosgw")
            if time.monotonic() > deadline:
                raise StartError("ceph: listing buckets answers %d: %s" % (status, body[:200]))
            time.sleep(0.05)
    except BaseException:
        stop(state, "ceph")
        raise
    return _s3_ready(state, "ceph", endpoint, CEPH_ACCESS_KEY, CEPH_SECRET_KEY, procs, t0)


# ----------------------------------------------------------------------------------------------
# S3 requests signed with SigV4 (path-style), standard library only

def _quote(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def s3_sign(method, url, access_key, secret_key, region, headers=None, payload_hash=None,
            when=None):
    """Headers (a new dict) for a SigV4-signed request: Host, X-Amz-Date, X-Amz-Content-Sha256
    (UNSIGNED-PAYLOAD unless payload_hash is given) and Authorization, besides HEADERS."""
    u = urllib.parse.urlsplit(url)
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = dict(headers or {})
    out["Host"] = u.netloc
    out["X-Amz-Date"] = amz_date
    out["X-Amz-Content-Sha256"] = payload_hash or "UNSIGNED-PAYLOAD"
    signed = sorted((k.lower(), " ".join(str(v).split())) for k, v in out.items()
                    if k.lower() in ("host", "content-md5", "content-type") or k.lower().startswith("x-amz-"))
    query = sorted((_quote(k), _quote(v)) for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    canonical = "\n".join([
        method,
        _quote(urllib.parse.unquote(u.path or "/"), safe="/-_.~"),
        "&".join("%s=%s" % kv for kv in query),
        "".join("%s:%s\n" % kv for kv in signed),
        ";".join(k for k, _ in signed),
        out["X-Amz-Content-Sha256"],
    ])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access_key, scope, ";".join(k for k, _ in signed), sig)
    return out


def s3_request(method, url, access_key, secret_key, region, body=b"", headers=None, timeout=60):
    """One signed request; returns (status, headers as a lower-case dict, body bytes). BODY may be
    bytes or a file opened for reading (sent with its size as Content-Length)."""
    u = urllib.parse.urlsplit(url)
    h = dict(headers or {})
    if hasattr(body, "read"):
        h["Content-Length"] = str(os.fstat(body.fileno()).st_size - body.tell())
        payload_hash = None
    else:
        if body or method in ("PUT", "POST"):
            h["Content-Length"] = str(len(body))
        payload_hash = hashlib.sha256(body).hexdigest()
    h = s3_sign(method, url, access_key, secret_key, region, h, payload_hash)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, (u.path or "/") + ("?" + u.query if u.query else ""), body=body or None,
                     headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _s3_env(env):
    return (env["AWS_ENDPOINT_URL"].rstrip("/"), env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
            env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or S3_REGION)


def s3_make_bucket(env, bucket):
    """Creates BUCKET (an existing one of ours is fine)."""
    endpoint, ak, sk, region = _s3_env(env)
    status, _, body = s3_request("PUT", "%s/%s" % (endpoint, bucket), ak, sk, region)
    if status not in (200, 409) or (status == 409 and b"BucketAlreadyOwnedByYou" not in body):
        raise StartError("creating bucket %s: %d %s" % (bucket, status, body[:300].decode(errors="replace")))


def s3_put_file(env, bucket, key, path):
    endpoint, ak, sk, region = _s3_env(env)
    url = "%s/%s/%s" % (endpoint, bucket, _quote(key, safe="/-_.~"))
    with open(path, "rb") as f:
        status, headers, body = s3_request("PUT", url, ak, sk, region, body=f, timeout=600)
    if status != 200:
        raise StartError("PUT %s: %d %s" % (url, status, body[:300].decode(errors="replace")))
    return headers.get("etag", "")


def s3_list(env, bucket, prefix=""):
    """{key: (size, ETag without quotes)} of the objects under PREFIX (ListObjectsV2, every page)."""
    import xml.etree.ElementTree as ET
    endpoint, ak, sk, region = _s3_env(env)
    out, token = {}, None
    while True:
        query = "list-type=2&prefix=" + _quote(prefix)
        if token:
            query += "&continuation-token=" + _quote(token)
        status, _, body = s3_request("GET", "%s/%s?%s" % (endpoint, bucket, query), ak, sk, region)
        if status != 200:
            raise StartError("listing s3://%s/%s: %d %s" % (bucket, prefix, status, body[:300].decode(errors="replace")))
        root = ET.fromstring(body)
        ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        for c in root.iter(ns + "Contents"):
            out[c.findtext(ns + "Key")] = (int(c.findtext(ns + "Size")), c.findtext(ns + "ETag").strip('"'))
        token = root.findtext(ns + "NextContinuationToken")
        if root.findtext(ns + "IsTruncated") != "true" or not token:
            return out


def _md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def put_dir_prefix(prefix):
    """The key prefix s3_put_dir puts files under: PREFIX as a folder (ending in "/"), or ""."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def s3_put_dir(env, bucket, directory, prefix="", jobs=4, skip_same=False):
    """Creates BUCKET and uploads every file under DIRECTORY to PREFIX/ + its relative path
    (PREFIX is a folder: a "/" is added when it has none; "" is the bucket's top), JOBS uploads at
    a time; with SKIP_SAME, objects already there with the same size and MD5 are left as they are
    (a Swift state directory kept from an earlier run). Returns the number of files and bytes
    under DIRECTORY."""
    prefix = put_dir_prefix(prefix)
    s3_make_bucket(env, bucket)
    files = []
    for dirpath, _, names in os.walk(directory):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            files.append((prefix + os.path.relpath(p, directory).replace(os.sep, "/"), p))
    count, total = len(files), sum(os.path.getsize(p) for _, p in files)
    if skip_same:
        there = s3_list(env, bucket, prefix)
        files = [(k, p) for k, p in files
                 if there.get(k, (None,))[0] != os.path.getsize(p) or there[k][1] != _md5_file(p)]
    with ThreadPoolExecutor(max(1, jobs)) as ex:
        list(ex.map(lambda kp: s3_put_file(env, bucket, kp[0], kp[1]), files))
    return count, total


# ----------------------------------------------------------------------------------------------
# Context managers for tests

@contextlib.contextmanager
def nginx_server(root, state, **kw):
    try:
        yield start_nginx(root, state, **kw)
    finally:
        stop(state, "nginx")


@contextlib.contextmanager
def swift_server(state, **kw):
    try:
        yield start_swift(state, **kw)
    finally:
        stop(state, "swift")


@contextlib.contextmanager
def ceph_server(state, **kw):
    try:
        yield start_ceph(state, **kw)
    finally:
        stop(state, "ceph")


# ----------------------------------------------------------------------------------------------
# Which S3 server: Swift, or Ceph's radosgw when SP_TEST_S3_SERVER=ceph

S3_SERVERS = ("swift", "ceph")


def s3_server_name():
    """The S3 server the tests start: SP_TEST_S3_SERVER (swift, the default, or ceph)."""
    name = os.environ.get("SP_TEST_S3_SERVER") or "swift"
    if name not in S3_SERVERS:
        raise StartError("SP_TEST_S3_SERVER=%s: not one of %s" % (name, ", ".join(S3_SERVERS)))
    return name


def start_s3(state, name=None, **kw):
    """start_swift or start_ceph: NAME, else the one s3_server_name gives."""
    name = name or s3_server_name()
    return (start_ceph if name == "ceph" else start_swift)(state, **kw)


def s3_env_of(state):
    """The variables of the S3 server started from STATE: the one running (Swift first), else
    the Swift ones kept there."""
    for g in S3_SERVERS:
        if any(_alive(p, t) for _, _, p, t in _recorded(state, g)):
            return read_env(state, g)
    return read_env(state, "swift")


# ----------------------------------------------------------------------------------------------
# Command line

def main(argv=None):
    ap = argparse.ArgumentParser(prog="servers.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ng = sub.add_parser("nginx").add_subparsers(dest="action", required=True).add_parser("start")
    ng.add_argument("--root", required=True)
    ng.add_argument("--state", required=True)
    ng.add_argument("--workers", type=int, default=1)
    ng.add_argument("--access-log", action="store_true")
    for name in S3_SERVERS:
        sub.add_parser(name).add_subparsers(dest="action", required=True).add_parser("start").add_argument(
            "--state", required=True)
    s3 = sub.add_parser("s3").add_subparsers(dest="action", required=True)
    s3.add_parser("start", help="the S3 server SP_TEST_S3_SERVER names (swift or ceph; default swift)").add_argument(
        "--state", required=True)
    mb = s3.add_parser("mb")
    mb.add_argument("--state", required=True)
    mb.add_argument("bucket")
    pd = s3.add_parser("put-dir")
    pd.add_argument("--state", required=True)
    pd.add_argument("--prefix", default="")
    pd.add_argument("--jobs", type=int, default=4)
    pd.add_argument("--skip-same", action="store_true", help="leave objects with the same size and MD5")
    pd.add_argument("bucket")
    pd.add_argument("dir")
    en = sub.add_parser("env")
    en.add_argument("--state", required=True)
    st = sub.add_parser("stop")
    st.add_argument("--state", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "nginx":
            env = start_nginx(a.root, a.state, workers=a.workers, access_log=a.access_log)
        elif a.cmd in S3_SERVERS or (a.cmd == "s3" and a.action == "start"):
            env = start_s3(a.state, None if a.cmd == "s3" else a.cmd)
        elif a.cmd == "s3":
            env = s3_env_of(a.state)
            if a.action == "mb":
                s3_make_bucket(env, a.bucket)
            else:
                n, size = s3_put_dir(env, a.bucket, a.dir, a.prefix, a.jobs, a.skip_same)
                print("# uploaded %d files, %d bytes to s3://%s/%s" % (n, size, a.bucket, put_dir_prefix(a.prefix)))
            return 0
        elif a.cmd == "env":
            env = {}
            for g in ("nginx",) + S3_SERVERS:
                with contextlib.suppress(FileNotFoundError):
                    env.update(read_env(a.state, g))
        else:
            killed = stop(a.state)
            if killed:
                print("servers.py: killed after the grace period: %s" % " ".join(killed), file=sys.stderr)
            return 0
        sys.stdout.write(format_env(env))
        return 0
    except Missing as e:
        print("servers.py: skip: %s" % e, file=sys.stderr)
        return SKIP
    except (StartError, OSError) as e:
        print("servers.py: %s" % e, file=sys.stderr)
        if getattr(a, "state", None):
            tails = _log_tails(a.state)
            if tails:
                print(tails, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
