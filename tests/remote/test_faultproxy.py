#!/usr/bin/env python3
"""Every fault of faultproxy.py is seen by curl, and requests it leaves alone (S3 SigV4 ones included) pass unchanged."""
# usage: test_faultproxy.py http|s3   (http: in front of nginx; s3: in front of Swift's s3api)

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultproxy  # noqa: E402
import servers  # noqa: E402


W = "%{http_code} %{size_download} %{num_connects}"


def curl(*args, expect_rc=0):
    """Runs curl -sS; returns (status, bytes downloaded, connections made, stdout, stderr)."""
    r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n" + W] + list(args), capture_output=True)
    body, _, tail = r.stdout.rpartition(b"\n")
    code, size, conns = tail.decode().split()
    if r.returncode != expect_rc:
        raise AssertionError("curl %s: exit %d, expected %d: %s" % (" ".join(args), r.returncode, expect_rc,
                                                                     r.stderr.decode(errors="replace")))
    return int(code), int(size), int(conns), body, r.stderr.decode(errors="replace")


def headers_of(*args):
    r = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null"] + list(args), capture_output=True, check=True)
    out = {}
    for line in r.stdout.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k:
            out[k.strip().lower()] = v.strip()
    return out


class Http(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-fp-")
        root = os.path.join(cls.tmp.name, "www")
        cls.state = os.path.join(cls.tmp.name, "state")
        os.makedirs(root)
        cls.data = os.urandom(1 << 20)
        with open(os.path.join(root, "blob"), "wb") as f:
            f.write(cls.data)
        with open(os.path.join(root, "other"), "wb") as f:
            f.write(b"other object")
        cls.env = servers.start_nginx(root, cls.state)
        cls.env.update(faultproxy.start_proxy(cls.env["SP_TEST_HTTP_URL"], cls.state))
        cls.url = cls.env["SP_TEST_PROXY_URL"]
        cls.blob = cls.url + "/blob"

    @classmethod
    def tearDownClass(cls):
        servers.stop(cls.state)
        cls.tmp.cleanup()

    def rules(self, rules):
        faultproxy.put_rules(self.url, rules)

    def test_passthrough_keepalive(self):
        self.rules([])
        code, size, _, body, _ = curl("-r", "1000-1999", self.blob)
        self.assertEqual((code, body), (206, self.data[1000:2000]))
        # two transfers in one curl: the second reuses the connection through the proxy
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                            self.blob, self.blob], capture_output=True, check=True)
        self.assertEqual(r.stdout.decode().split(), ["1", "0"])
        self.assertEqual(headers_of(self.blob)["etag"], headers_of(self.env["SP_TEST_HTTP_URL"] + "/blob")["etag"])

    def test_503_burst_then_429_retry_after(self):
        self.rules([{"fault": "status", "code": 503, "count": 3}])
        for _ in range(3):
            code, _, _, body, _ = curl("-r", "0-99", self.blob)
            self.assertEqual(code, 503)
            self.assertIn(b"SlowDown", body)
        self.assertEqual(curl("-r", "0-99", self.blob)[0], 206)
        self.rules([{"fault": "status", "code": 429, "retry_after": 2, "count": 1}])
        h = headers_of(self.blob)
        self.assertEqual(h.get("retry-after"), "2")
        self.assertEqual(curl(self.blob)[0], 200)
        st = faultproxy.proxy_state(self.url)
        self.assertEqual(st["fired"], [1])
        self.assertEqual(st["log"][-2][2:], [429, "status"])

    def test_reset_after_bytes(self):
        self.rules([{"fault": "reset", "after_bytes": 5000}])
        code, size, _, body, err = curl(self.blob, expect_rc=56)
        self.assertIn("reset", err.lower())
        self.assertLessEqual(size, 5000)
        self.assertEqual(body, self.data[:len(body)])
        self.rules([{"fault": "reset"}])  # right after the headers
        self.assertEqual(curl(self.blob, expect_rc=56)[1], 0)
        self.assertEqual(curl(self.blob)[1], len(self.data))  # count 1: the next one passes

    def test_delay_before_and_inside_body(self):
        self.rules([{"fault": "delay", "seconds": 3}])
        self.assertEqual(curl("-m", "1", self.blob, expect_rc=28)[1], 0)
        self.rules([{"fault": "delay", "seconds": 3, "after_bytes": 1000}])
        code, size, _, body, _ = curl("-m", "1", self.blob, expect_rc=28)
        self.assertEqual((code, size, body), (200, 1000, self.data[:1000]))
        self.rules([{"fault": "delay", "seconds": 0.2, "after_bytes": 1000}])
        self.assertEqual(curl(self.blob)[3], self.data)  # a short stall: the body arrives whole

    def test_truncate_keeps_length(self):
        self.rules([{"fault": "truncate"}])
        code, size, _, body, err = curl(self.blob, expect_rc=18)
        self.assertEqual((code, size, body), (200, len(self.data) // 2, self.data[:len(self.data) // 2]))
        self.rules([{"fault": "truncate", "after_bytes": 10}])
        self.assertEqual(curl("-r", "100-199", self.blob, expect_rc=18)[3], self.data[100:110])

    def test_wrong_content_length(self):
        self.rules([{"fault": "wrong_length", "delta": -10}])
        code, size, _, body, _ = curl("-r", "0-99", self.blob)  # curl cannot tell: 90 bytes for 100
        self.assertEqual((code, body), (206, self.data[:90]))
        self.rules([{"fault": "wrong_length", "delta": -10}])
        h = headers_of("-r", "0-99", self.blob)
        self.assertEqual((h["content-length"], h["content-range"]), ("90", "bytes 0-99/%d" % len(self.data)))
        self.rules([{"fault": "wrong_length", "delta": 10}])
        self.assertEqual(curl("-r", "0-99", self.blob, expect_rc=18)[3], self.data[:100])

    def test_changed_object_after_n(self):
        self.rules([{"fault": "changed", "match": "/blob", "skip": 2, "count": -1}])
        real = headers_of(self.env["SP_TEST_HTTP_URL"] + "/blob")["etag"]
        self.assertEqual(curl("-r", "0-99", self.blob)[3], self.data[:100])
        self.assertEqual(headers_of("-r", "0-99", self.blob)["etag"], real)
        for _ in range(2):
            h = headers_of("-r", "0-99", self.blob)
            self.assertNotEqual(h["etag"], real)
            self.assertEqual(h["content-length"], "100")
            body = curl("-r", "0-99", self.blob)[3]
            self.assertEqual(len(body), 100)
            self.assertNotEqual(body, self.data[:100])
            self.assertEqual(bytes(b ^ 0xFF for b in body), self.data[:100])
        self.assertEqual(curl(self.url + "/other")[3], b"other object")  # not matched

    def test_match_method_and_rules_file(self):
        self.rules([{"fault": "status", "code": 500, "match": "/other", "count": -1},
                    {"fault": "status", "code": 502, "method": "HEAD", "count": -1}])
        self.assertEqual(curl(self.blob)[0], 200)
        self.assertEqual(curl(self.url + "/other")[0], 500)
        self.assertEqual(curl("-I", self.blob)[0], 502)
        # the rules file, rewritten, takes over at the next request
        tmp = self.env["SP_TEST_PROXY_RULES"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump([{"fault": "status", "code": 504, "count": -1}], f)
        os.replace(tmp, self.env["SP_TEST_PROXY_RULES"])
        self.assertEqual(curl(self.blob)[0], 504)
        with self.assertRaises(ValueError):
            self.rules([{"fault": "nonsense"}])
        self.rules([])
        self.assertEqual(curl(self.blob)[0], 200)


class S3(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-fp3-")
        cls.state = os.path.join(cls.tmp.name, "state")
        cls.env = servers.start_s3(cls.state)  # Swift, or Ceph with SP_TEST_S3_SERVER=ceph
        cls.env.update(faultproxy.start_proxy(cls.env["AWS_ENDPOINT_URL"], cls.state))
        cls.url = cls.env["SP_TEST_PROXY_URL"]
        cls.netrc = os.path.join(cls.tmp.name, "netrc")
        with open(cls.netrc, "w") as f:
            f.write("machine 127.0.0.1 login %s password %s\n" % (cls.env["AWS_ACCESS_KEY_ID"],
                                                                cls.env["AWS_SECRET_ACCESS_KEY"]))
        servers.s3_make_bucket(cls.env, "fpbucket")

    @classmethod
    def tearDownClass(cls):
        servers.stop(cls.state)
        cls.tmp.cleanup()

    def s3curl(self, *args, expect_rc=0, netrc=None):
        return curl("--netrc-file", netrc or self.netrc, "--aws-sigv4", "aws:amz:us-east-1:s3",
                    "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", *args, expect_rc=expect_rc)

    def test_sigv4_through_proxy(self):
        faultproxy.put_rules(self.url, [])
        src = os.path.join(self.tmp.name, "up.bin")
        data = os.urandom(3 << 20)  # over 1 MiB: curl sends Expect: 100-continue
        with open(src, "wb") as f:
            f.write(data)
        code = self.s3curl("-T", src, self.url + "/fpbucket/obj")[0]
        self.assertEqual(code, 200)
        code, _, _, body, _ = self.s3curl("-r", "1000-1999", self.url + "/fpbucket/obj")
        self.assertEqual((code, body), (206, data[1000:2000]))
        # the standard-library signer through the proxy too
        proxied = dict(self.env, AWS_ENDPOINT_URL=self.url)
        ep, ak, sk, region = servers._s3_env(proxied)
        st, h, body = servers.s3_request("GET", ep + "/fpbucket/obj", ak, sk, region, headers={"Range": "bytes=0-9"})
        self.assertEqual((st, body), (206, data[:10]))
        bad = os.path.join(self.tmp.name, "badnetrc")
        with open(bad, "w") as f:
            f.write("machine 127.0.0.1 login %s password wrong\n" % ak)
        code, _, _, body, _ = self.s3curl("-r", "0-9", self.url + "/fpbucket/obj", netrc=bad)
        self.assertEqual(code, 403)
        self.assertIn(b"SignatureDoesNotMatch", body)
        # faults on S3 answers: a 503 burst, then a changed object
        faultproxy.put_rules(self.url, [{"fault": "status", "code": 503, "count": 2},
                                        {"fault": "changed", "match": "/fpbucket/obj", "count": -1}])
        self.assertEqual(self.s3curl("-r", "0-9", self.url + "/fpbucket/obj")[0], 503)
        self.assertEqual(self.s3curl("-r", "0-9", self.url + "/fpbucket/obj")[0], 503)
        st, h, body = servers.s3_request("GET", ep + "/fpbucket/obj", ak, sk, region, headers={"Range": "bytes=0-9"})
        self.assertEqual(st, 206)
        self.assertNotEqual(h["etag"].strip('"'), servers.hashlib.md5(data).hexdigest())
        self.assertEqual(body, bytes(b ^ 0xFF for b in data[:10]))


if __name__ == "__main__":
    sys.exit(servers.test_main({"http": Http, "s3": S3},
                               {"http": ["curl", "nginx", "openssl"], "s3": ["curl", "swift"]}))
