#!/usr/bin/env python3
"""The remote tests' real servers (servers.py) come up, serve byte ranges, check credentials, and stop leaving no process."""
# usage: test_servers.py nginx|swift|ceph|stop   (exit 77 when the server's package is missing)

import base64
import contextlib
import hashlib
import http.client
import io
import os
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402


def _gone(state, rows):
    """True when none of the recorded processes, nor anything in their sessions, still runs."""
    return not any(servers._alive(pid, t) or servers._session_members(pid) for _, _, pid, t in rows)


def _get(url, headers=None, ca=None):
    u = servers.urllib.parse.urlsplit(url)
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=30,
                                           context=ssl.create_default_context(cafile=ca))
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", u.path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Nginx(unittest.TestCase):
    def test_ranges_tls_auth_stop(self):
        with tempfile.TemporaryDirectory(prefix="sp-nginx-") as tmp:
            root, state = os.path.join(tmp, "www"), os.path.join(tmp, "state")
            os.makedirs(os.path.join(root, "sub"))
            data = os.urandom(3 << 20)
            with open(os.path.join(root, "sub", "blob.bin"), "wb") as f:
                f.write(data)
            t0 = time.monotonic()
            with servers.nginx_server(root, state) as env:
                print("nginx ready in %.2f s" % (time.monotonic() - t0))
                rows = servers._recorded(state)
                self.assertEqual([r[1] for r in rows], ["nginx"])
                self.assertEqual(servers.read_env(state, "nginx"), {k: str(v) for k, v in env.items()})
                rng = {"Range": "bytes=1000-1999"}
                for base in (env["SP_TEST_HTTP_URL"], env["SP_TEST_HTTPS_URL"]):
                    st, h, body = _get(base + "/sub/blob.bin", rng, env["SP_TEST_CA"])
                    self.assertEqual((st, body, h["content-range"]), (206, data[1000:2000], "bytes 1000-1999/%d" % len(data)), base)
                    st, h, body = _get(base + "/sub/blob.bin", None, env["SP_TEST_CA"])
                    self.assertEqual((st, len(body), body == data), (200, len(data), True))
                    self.assertIn("etag", h)
                    st, _, _ = _get(base + "/sub/missing", None, env["SP_TEST_CA"])
                    self.assertEqual(st, 404)
                # the CA is needed: the system's store does not trust the server
                with self.assertRaises(ssl.SSLCertVerificationError):
                    _get(env["SP_TEST_HTTPS_URL"] + "/sub/blob.bin", rng)
                # basic and bearer auth on the same files
                basic = "Basic " + base64.b64encode(("%s:%s" % (env["SP_TEST_HTTP_USER"], env["SP_TEST_HTTP_PASSWORD"])).encode()).decode()
                url = env["SP_TEST_HTTP_URL"]
                self.assertEqual(_get(url + "/basic/sub/blob.bin", rng)[0], 401)
                self.assertEqual(_get(url + "/basic/sub/blob.bin", {"Authorization": "Basic eDp5"})[0], 401)
                st, _, body = _get(url + "/basic/sub/blob.bin", dict(rng, Authorization=basic))
                self.assertEqual((st, body), (206, data[1000:2000]))
                st, h, _ = _get(url + "/bearer/sub/blob.bin", rng)
                self.assertEqual(st, 401)
                self.assertIn("Bearer", h.get("www-authenticate", ""))
                self.assertEqual(_get(url + "/bearer/sub/blob.bin", {"Authorization": "Bearer nope"})[0], 401)
                st, _, body = _get(url + "/bearer/sub/blob.bin", dict(rng, Authorization="Bearer " + env["SP_TEST_HTTP_TOKEN"]))
                self.assertEqual((st, body), (206, data[1000:2000]))
                # libcurl, as the library uses it, trusts the CA file
                out = subprocess.run(["curl", "-sS", "--cacert", env["SP_TEST_CA"], "-r", "0-9",
                                      env["SP_TEST_HTTPS_URL"] + "/sub/blob.bin"],
                                     capture_output=True, check=True).stdout
                self.assertEqual(out, data[:10])
                # a second start from the same state is refused while the first runs
                with self.assertRaises(servers.StartError):
                    servers.start_nginx(root, state)
            self.assertTrue(_gone(state, rows))
            self.assertFalse(os.path.exists(os.path.join(state, "pids")))
            with self.assertRaises(OSError):
                _get(env["SP_TEST_HTTP_URL"] + "/sub/blob.bin")


def _check_s3(t, tmp, state, env):
    """What the remote tests need of an S3 server: buckets, uploads with MD5 ETags (skip_same),
    listing, byte ranges, a wrong secret's 403, NoSuchKey and NoSuchBucket, and curl's own SigV4."""
    ep, ak, sk, region = servers._s3_env(env)
    servers.s3_make_bucket(env, "spbucket")
    servers.s3_make_bucket(env, "spbucket")  # ours already: fine
    src = os.path.join(tmp, "src")
    os.makedirs(os.path.join(src, "d"))
    data = os.urandom(20 << 20)
    with open(os.path.join(src, "d", "big.bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(src, "small"), "wb") as f:
        f.write(b"hello")
    t.assertEqual(servers.s3_put_dir(env, "spbucket", src, "ds/"), (2, len(data) + 5))
    t.assertEqual(servers.s3_list(env, "spbucket", "ds/"),
                  {"ds/d/big.bin": (len(data), hashlib.md5(data).hexdigest()),
                   "ds/small": (5, hashlib.md5(b"hello").hexdigest())})
    with open(os.path.join(src, "small"), "wb") as f:
        f.write(b"HELLO")  # same size, other bytes: sent again; big.bin is not
    sent = []
    put = servers.s3_put_file
    servers.s3_put_file = lambda *a: sent.append(a[2]) or put(*a)
    try:
        t.assertEqual(servers.s3_put_dir(env, "spbucket", src, "ds/", skip_same=True), (2, len(data) + 5))
    finally:
        servers.s3_put_file = put
    t.assertEqual(sent, ["ds/small"])
    # a prefix without its "/" is still a folder, and the command line names the folder used
    t.assertEqual(servers.s3_put_dir(env, "spbucket", src, "ds2"), (2, len(data) + 5))
    t.assertEqual(sorted(servers.s3_list(env, "spbucket", "ds2")), ["ds2/d/big.bin", "ds2/small"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        t.assertEqual(servers.main(["s3", "put-dir", "--state", state, "--prefix", "ds3",
                                    "--skip-same", "spbucket", src]), 0)
    t.assertIn("to s3://spbucket/ds3/\n", out.getvalue())
    t.assertIn("ds3/small", servers.s3_list(env, "spbucket", "ds3/"))
    url = ep + "/spbucket/ds/d/big.bin"
    st, h, body = servers.s3_request("HEAD", url, ak, sk, region)
    t.assertEqual((st, h["content-length"], h["etag"].strip('"')),
                  (200, str(len(data)), hashlib.md5(data).hexdigest()))
    st, h, body = servers.s3_request("GET", url, ak, sk, region, headers={"Range": "bytes=1000-1999"})
    t.assertEqual((st, body, h["content-range"]), (206, data[1000:2000], "bytes 1000-1999/%d" % len(data)))
    last = len(data) - 8
    st, _, body = servers.s3_request("GET", url, ak, sk, region, headers={"Range": "bytes=%d-" % last})
    t.assertEqual((st, body), (206, data[last:]))
    st, _, body = servers.s3_request("GET", ep + "/spbucket/ds/small", ak, sk, region)
    t.assertEqual((st, body), (200, b"HELLO"))
    st, _, body = servers.s3_request("GET", url, ak, "wrong-secret", region, headers={"Range": "bytes=0-9"})
    t.assertEqual(st, 403)
    t.assertIn(b"SignatureDoesNotMatch", body)
    st, _, body = servers.s3_request("GET", ep + "/spbucket/ds/none", ak, sk, region)
    t.assertEqual(st, 404)
    t.assertIn(b"NoSuchKey", body)
    st, _, body = servers.s3_request("GET", ep + "/nobucket/x", ak, sk, region)
    t.assertEqual(st, 404)
    t.assertIn(b"NoSuchBucket", body)
    st, _, body = servers.s3_request("GET", ep + "/spbucket?list-type=2&prefix=ds/", ak, sk, region)
    t.assertEqual(st, 200)
    t.assertIn(b"<Key>ds/d/big.bin</Key>", body)
    # curl's own SigV4, the key given through a netrc file (Swift's holds a colon)
    netrc = os.path.join(tmp, "netrc")
    with open(netrc, "w") as f:
        f.write("machine 127.0.0.1 login %s password %s\n" % (ak, sk))
    out = subprocess.run(["curl", "-sS", "-f", "--netrc-file", netrc, "--aws-sigv4",
                          "aws:amz:%s:s3" % region, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                          "-r", "5-14", url], capture_output=True, check=True).stdout
    t.assertEqual(out, data[5:15])


class Swift(unittest.TestCase):
    def test_s3_put_range_auth_stop(self):
        with tempfile.TemporaryDirectory(prefix="sp-swift-") as tmp:
            state = os.path.join(tmp, "state")
            with servers.swift_server(state) as env:
                print("swift ready in %s s" % env["SP_TEST_SWIFT_READY_S"])
                rows = servers._recorded(state)
                self.assertEqual(sorted(r[1] for r in rows),
                                 ["swift-account", "swift-container", "swift-object", "swift-proxy"])
                _check_s3(self, tmp, state, env)
            self.assertTrue(_gone(state, rows))
            self.assertFalse(os.path.exists(os.path.join(state, "pids")))


class Ceph(unittest.TestCase):
    def test_s3_put_range_auth_stop_restart(self):
        with tempfile.TemporaryDirectory(prefix="sp-ceph-") as tmp:
            state = os.path.join(tmp, "state")
            with servers.ceph_server(state) as env:
                print("ceph ready in %s s" % env["SP_TEST_CEPH_READY_S"])
                rows = servers._recorded(state)
                self.assertEqual(sorted(r[1] for r in rows), ["ceph-mon", "ceph-osd", "radosgw"])
                self.assertEqual(servers.read_env(state, "ceph"), env)
                _check_s3(self, tmp, state, env)
                with self.assertRaises(servers.StartError):
                    servers.start_ceph(state)  # not a second one from the same state while it runs
            self.assertTrue(_gone(state, rows))
            self.assertFalse(os.path.exists(os.path.join(state, "pids")))
            # a start after a stop, from the same state: a new, empty cluster
            t0 = time.monotonic()
            with servers.ceph_server(state) as env:
                print("ceph ready again in %.2f s" % (time.monotonic() - t0))
                rows = servers._recorded(state)
                ep, ak, sk, region = servers._s3_env(env)
                st, _, body = servers.s3_request("GET", ep + "/", ak, sk, region)
                self.assertEqual(st, 200)
                self.assertNotIn(b"<Name>spbucket</Name>", body)
                servers.s3_make_bucket(env, "spbucket")
                self.assertEqual(servers.s3_request("PUT", ep + "/spbucket/k", ak, sk, region, b"x")[0], 200)
            self.assertTrue(_gone(state, rows))


class Stop(unittest.TestCase):
    def test_kills_what_ignores_sigterm(self):
        with tempfile.TemporaryDirectory(prefix="sp-stop-") as state:
            p = servers._spawn(state, "x", "stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & sleep 60; wait"])
            q = servers._spawn(state, "y", "polite", ["sleep", "60"])
            time.sleep(0.2)
            rows = servers._recorded(state)
            self.assertEqual(servers.stop(state, "y"), [])
            self.assertTrue(_gone(state, [r for r in rows if r[0] == "y"]))
            self.assertTrue(servers._alive(p.pid))
            t0 = time.monotonic()
            self.assertEqual(servers.stop(state, bound=0.5), ["stubborn"])
            self.assertLess(time.monotonic() - t0, 5)
            self.assertTrue(_gone(state, rows))  # the sleep in its session too
            p.wait()
            q.wait()

    def test_reused_pid_left_alone(self):
        with tempfile.TemporaryDirectory(prefix="sp-stop-") as state:
            # a session (a shell and its sleep) recorded with another start time: as if our
            # server had exited and its pid gone to this process since
            p = servers._spawn(state, "z", "reused", ["sh", "-c", "sleep 60 & wait"])
            time.sleep(0.2)
            (g, n, pid, t), = servers._recorded(state)
            with open(servers._pids_file(state), "w") as f:
                f.write("%s %s %d %d\n" % (g, n, pid, t - 1))
            members = servers._session_members(pid)
            self.assertEqual(len(members), 2)
            self.assertEqual(servers.stop(state, bound=0.5), [])
            self.assertEqual(sorted(servers._session_members(pid)), sorted(members))
            for m in members:
                os.kill(m, servers.signal.SIGKILL)
            p.wait()


if __name__ == "__main__":
    sys.exit(servers.test_main({"nginx": Nginx, "swift": Swift, "ceph": Ceph, "stop": Stop},
                               {"nginx": ["nginx", "openssl", "curl"], "swift": ["swift", "curl"],
                                "ceph": ["ceph", "curl"]}))
