#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 proxy for the remote tests: clients speak plain HTTP to it as if it
were the server; it forwards each request byte for byte (Host header included, so S3 SigV4
signatures still match) to the real server and passes the answer back - or breaks it as the
rules say.

    faultproxy.py --upstream http://127.0.0.1:PORT [--port P] [--rules JSON] [--rules-file F]

prints SP_TEST_PROXY_URL=http://127.0.0.1:P and serves until SIGTERM. From Python:
start_proxy(upstream, state, rules) runs it as a process recorded in STATE (servers.stop ends it).

Rules are a JSON list; the first rule that applies to a request acts on it. Every rule may have:
  match   a substring of the request target (path and query); default: every request
  method  only requests with this method (GET, HEAD, PUT, ...)
  skip    let this many matching requests through first (default 0)
  count   act on this many requests after those, then stand aside; -1: without end (default 1)
and one "fault":
  reset         send the headers and after_bytes bytes of the body (default 0), then a TCP RST
  delay         wait `seconds` before the answer, or, with after_bytes, in the middle of its body
  status        answer `code` (503, 429, 500, ...) without asking the server; `retry_after`
                adds a Retry-After header
  truncate      keep the Content-Length, send only after_bytes (default: half) of the body, close
  wrong_length  announce Content-Length + `delta`; with delta < 0 only that many bytes are sent,
                with delta > 0 the whole body is; the connection is closed after
  changed       the object changed: its bytes are inverted (each XOR 0xFF) and its ETag differs;
                with `skip` N the first N answers are the real ones ("changed after N requests")
  no_etag       the answer without its ETag header (a server or proxy that sends one only sometimes)
The rules change at run time: PUT a JSON list to /__faultproxy/rules (DELETE clears them), or
rewrite --rules-file (read again when it changes). GET /__faultproxy/ gives the rules, how often
each fired, and a log of the last requests: [method, target, status, fault or null].
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import urllib.parse

CONTROL = "/__faultproxy/"
FAULTS = ("reset", "delay", "status", "truncate", "wrong_length", "changed", "no_etag")
INVERT = bytes(range(255, -1, -1))
LOG_KEEP = 1000
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


class BadRequest(Exception):
    pass


def check_rules(rules):
    """Validates a rule list; returns it with the counters each rule needs."""
    if not isinstance(rules, list):
        raise ValueError("rules must be a JSON list")
    out = []
    for i, r in enumerate(rules):
        if not isinstance(r, dict) or r.get("fault") not in FAULTS:
            raise ValueError("rule %d: 'fault' must be one of %s" % (i, ", ".join(FAULTS)))
        known = {"fault", "match", "method", "skip", "count", "after_bytes", "seconds", "code",
                 "retry_after", "delta", "body"}
        extra = set(r) - known
        if extra:
            raise ValueError("rule %d: unknown keys %s" % (i, sorted(extra)))
        if r["fault"] == "status" and not isinstance(r.get("code"), int):
            raise ValueError("rule %d: status needs an integer 'code'" % i)
        if r["fault"] == "delay" and not isinstance(r.get("seconds"), (int, float)):
            raise ValueError("rule %d: delay needs 'seconds'" % i)
        if r["fault"] == "wrong_length" and not isinstance(r.get("delta"), int):
            raise ValueError("rule %d: wrong_length needs an integer 'delta'" % i)
        out.append(dict(r, _seen=0, _fired=0))
    return out


class Proxy:
    def __init__(self, upstream, rules=None, rules_file=None):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("upstream must be http://HOST:PORT (got %r)" % upstream)
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.rules = check_rules(rules or [])
        self.rules_file = rules_file
        self.rules_stamp = None
        self.requests = 0
        self.log = []
        self._reload_file()

    # -- rules

    def _reload_file(self):
        if not self.rules_file:
            return
        try:
            st = os.stat(self.rules_file)
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self.rules_stamp:
            return
        with open(self.rules_file) as f:
            text = f.read()
        try:
            self.rules = check_rules(json.loads(text) if text.strip() else [])
            self.rules_stamp = stamp
        except ValueError as e:  # a file half written: keep the old rules, read it again later
            print("faultproxy: %s: %s" % (self.rules_file, e), file=sys.stderr)

    def pick(self, method, target):
        self._reload_file()
        for r in self.rules:
            if r.get("method") and r["method"] != method:
                continue
            if r.get("match") and r["match"] not in target:
                continue
            r["_seen"] += 1
            if r["_seen"] <= r.get("skip", 0):
                continue
            count = r.get("count", 1)
            if count >= 0 and r["_fired"] >= count:
                continue
            r["_fired"] += 1
            return r
        return None

    def state(self):
        return {"rules": [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rules],
                "fired": [r["_fired"] for r in self.rules], "seen": [r["_seen"] for r in self.rules],
                "requests": self.requests, "log": self.log}

    def note(self, method, target, status, fault):
        self.log.append([method, target, status, fault])
        del self.log[:-LOG_KEEP]

    # -- connections

    async def serve_client(self, reader, writer):
        writer.transport.set_write_buffer_limits(0)
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                if not await self.one(reader, writer, head):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def one(self, reader, writer, head):
        """Serves one request; returns whether the client connection stays open."""
        method, target, version, headers = parse_request(head)
        if target.startswith(CONTROL):
            return await self.control(reader, writer, method, target, headers)
        self.requests += 1
        rule = self.pick(method, target)
        fault = rule["fault"] if rule else None
        expect = headers.get("expect", "").lower() == "100-continue"
        if fault == "status":
            body = rule.get("body")
            if body is None:
                body = ("<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>%s</Code><Message>"
                        "faultproxy: injected %d</Message></Error>" % (
                            "SlowDown" if rule["code"] == 503 else "Injected", rule["code"]))
            body = body.encode()
            extra = ["Content-Type: application/xml"]
            if rule.get("retry_after") is not None:
                extra.append("Retry-After: %s" % rule["retry_after"])
            keep = not expect
            if not expect:  # the client sends its body anyway: read and drop it
                await copy_body(reader, None, headers)
            await send_simple(writer, rule["code"], body, extra, keep)
            self.note(method, target, rule["code"], fault)
            return keep
        if fault == "delay" and rule.get("after_bytes") is None:
            await asyncio.sleep(rule["seconds"])
        try:
            up_r, up_w = await asyncio.open_connection(self.up_host, self.up_port)
        except OSError as e:
            await copy_body(reader, None, headers) if not expect else None
            await send_simple(writer, 502, ("faultproxy: upstream %s:%d: %s" % (
                self.up_host, self.up_port, e)).encode(), [], not expect)
            self.note(method, target, 502, "upstream-down")
            return not expect
        try:
            up_w.write(head)
            if expect:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            await copy_body(reader, up_w, headers)
            await up_w.drain()
            while True:  # the server's own 100 Continue (we answered it already) is dropped
                rhead = await read_head(up_r)
                if rhead is None:
                    raise ConnectionError("upstream closed without an answer")
                status, rheaders = parse_response(rhead)
                if not 100 <= status < 200:
                    break
            return await self.answer(up_r, writer, method, target, status, rhead, rheaders, rule)
        finally:
            up_w.close()

    async def answer(self, up_r, writer, method, target, status, rhead, rheaders, rule):
        fault = rule["fault"] if rule else None
        no_body = method == "HEAD" or status in (204, 304)
        chunked = "chunked" in rheaders.get("transfer-encoding", "").lower()
        length = None if (no_body or chunked) else rheaders.get("content-length")
        length = int(length) if length is not None else None
        keep = rheaders.get("connection", "").lower() != "close" and (no_body or chunked or length is not None)
        if fault == "changed":
            rhead = change_etag(rhead)
        if fault == "no_etag":
            rhead = drop_header(rhead, "ETag")
        if fault == "wrong_length" and length is not None:
            rhead = set_header(rhead, "Content-Length", str(max(0, length + rule["delta"])))
        writer.write(rhead)
        await writer.drain()
        limit = None  # body bytes to send before the fault acts
        if fault in ("reset", "truncate", "delay") and rule.get("after_bytes") is not None:
            limit = rule["after_bytes"]
        elif fault == "truncate":
            limit = (length or 0) // 2
        elif fault == "reset":
            limit = 0
        elif fault == "wrong_length" and length is not None and rule["delta"] < 0:
            limit = max(0, length + rule["delta"])
        sent = 0
        if not no_body:
            try:
                async for chunk in body_pieces(up_r, length, chunked):
                    if fault == "changed" and not chunked:
                        chunk = chunk.translate(INVERT)
                    if limit is not None and sent + len(chunk) >= limit:
                        before, rest = chunk[:limit - sent], chunk[limit - sent:]
                        writer.write(before)
                        await writer.drain()
                        sent = limit
                        if fault != "delay":
                            break
                        await asyncio.sleep(rule["seconds"])  # a stall in the middle of the body
                        limit, chunk = None, rest
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
            except (ConnectionError, asyncio.IncompleteReadError):
                keep = False  # the server itself cut the body short: so does the client's copy
        self.note(method, target, status, fault)
        if fault == "reset":
            abort_with_rst(writer)
            return False
        if fault in ("truncate", "wrong_length"):
            return False
        return keep

    async def control(self, reader, writer, method, target, headers):
        body = await copy_body(reader, bytearray(), headers)
        path = target.split("?")[0]
        try:
            if method == "GET" and path in (CONTROL, CONTROL + "state"):
                out = self.state()
            elif method in ("PUT", "POST") and path == CONTROL + "rules":
                self.rules = check_rules(json.loads(bytes(body) or b"[]"))
                out = self.state()
            elif method == "DELETE" and path == CONTROL + "rules":
                self.rules = []
                out = self.state()
            else:
                await send_simple(writer, 404, b"faultproxy: GET /__faultproxy/, PUT or DELETE /__faultproxy/rules\n", [], True)
                return True
        except ValueError as e:
            await send_simple(writer, 400, ("faultproxy: %s\n" % e).encode(), [], True)
            return True
        await send_simple(writer, 200, json.dumps(out).encode(), ["Content-Type: application/json"], True)
        return True


# ----------------------------------------------------------------------------------------------
# HTTP/1.1 framing

async def read_head(reader):
    """The bytes of a request or response head up to and including the blank line; None on a
    clean end of the connection before any byte."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise BadRequest("head too long")
    return head


def _headers(lines):
    h = {}
    for line in lines:
        k, _, v = line.partition(":")
        h[k.strip().lower()] = v.strip()
    return h


def parse_request(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest("bad request line %r" % lines[0])
    return parts[0], parts[1], parts[2], _headers(l for l in lines[1:] if l)


def parse_response(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    return int(parts[1]), _headers(l for l in lines[1:] if l)


def drop_header(head, name):
    lines = head.decode("latin-1").split("\r\n")
    out = [l for l in lines[:-2] if l.partition(":")[0].strip().lower() != name.lower()]
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def set_header(head, name, value):
    return drop_header(head, name)[:-2] + ("%s: %s\r\n\r\n" % (name, value)).encode("latin-1")


def change_etag(head):
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "etag":
            new = hashlib.md5(("changed:" + v.strip()).encode()).hexdigest()
            return set_header(head, "ETag", '"%s"' % new)
    return head


async def body_pieces(reader, length, chunked):
    """The raw bytes of a response body as they come: chunked framing kept as is, else LENGTH
    bytes, else everything up to the end of the connection."""
    if chunked:
        while True:
            line = await reader.readuntil(b"\r\n")
            yield line
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:  # trailers up to the blank line
                while True:
                    t = await reader.readuntil(b"\r\n")
                    yield t
                    if t == b"\r\n":
                        return
            n = size + 2
            while n:
                data = await reader.read(min(n, 65536))
                if not data:
                    raise ConnectionError("server closed in the middle of a chunk")
                n -= len(data)
                yield data
    while length is None or length > 0:
        data = await reader.read(65536 if length is None else min(length, 65536))
        if not data:
            if length:
                raise ConnectionError("server closed %d bytes before the end of the body" % length)
            return
        if length is not None:
            length -= len(data)
        yield data


async def copy_body(reader, dest, headers):
    """Moves a request body (Content-Length or chunked) to DEST: a StreamWriter, a bytearray, or
    None to drop it. Returns DEST."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            data = line + (await reader.readexactly(size + 2) if size else b"")
            if size == 0:  # trailers up to the blank line
                while True:
                    t = await reader.readuntil(b"\r\n")
                    data += t
                    if t == b"\r\n":
                        break
            _put(dest, data)
            if size == 0:
                return dest
            if hasattr(dest, "drain"):
                await dest.drain()
    n = int(headers.get("content-length", "0") or 0)
    while n > 0:
        data = await reader.read(min(n, 65536))
        if not data:
            raise ConnectionError("client closed in the middle of its body")
        n -= len(data)
        _put(dest, data)
        if hasattr(dest, "drain"):
            await dest.drain()
    return dest


def _put(dest, data):
    if dest is None:
        return
    if isinstance(dest, bytearray):
        dest += data
    else:
        dest.write(data)


async def send_simple(writer, code, body, extra, keep):
    head = ["HTTP/1.1 %d %s" % (code, REASONS.get(code, "Status")), "Content-Length: %d" % len(body),
            "Connection: %s" % ("keep-alive" if keep else "close")] + extra
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def abort_with_rst(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ----------------------------------------------------------------------------------------------
# Running it

async def serve(proxy, port, ready=None):
    server = await asyncio.start_server(proxy.serve_client, "127.0.0.1", port, limit=1 << 20)
    if ready:
        ready(server.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()  # connections still open (a delay in progress) are cancelled with the loop


def start_proxy(upstream, state, rules=None, name="faultproxy", timeout=15.0):
    """Runs the proxy as a process recorded in STATE (stopped by servers.stop(STATE, NAME)); its
    rules in STATE/NAME.rules.json (rewrite it, or use the control path, to change them). Returns
    {'SP_TEST_PROXY_URL': ..., 'SP_TEST_PROXY_RULES': ..., 'SP_TEST_PROXY_PID': ...}."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import servers
    os.makedirs(state, exist_ok=True)
    rules_file = os.path.join(os.path.abspath(state), name + ".rules.json")
    check_rules(rules or [])
    with open(rules_file, "w") as f:
        json.dump(rules or [], f)
    for _ in range(3):
        port = servers.free_ports(1)[0]
        proc = servers._spawn(state, name, name, [sys.executable, os.path.abspath(__file__),
                              "--upstream", upstream, "--port", str(port), "--rules-file", rules_file])
        try:
            servers._wait_ports([(name, proc)], [port], timeout, name)
            return {"SP_TEST_PROXY_URL": "http://127.0.0.1:%d" % port,
                    "SP_TEST_PROXY_RULES": rules_file, "SP_TEST_PROXY_PID": proc.pid}
        except servers.StartError:
            servers.stop(state, name)
            proc.wait()
    raise servers.StartError("%s did not start (see %s/logs/%s.log)" % (name, state, name))


def put_rules(proxy_url, rules):
    """Replaces the rules of a running proxy through its control path; returns its state."""
    import http.client
    u = urllib.parse.urlsplit(proxy_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        body = json.dumps(rules).encode()
        conn.request("PUT", CONTROL + "rules", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise ValueError(data.decode(errors="replace").strip())
        return json.loads(data)
    finally:
        conn.close()


def proxy_state(proxy_url):
    """The rules, their counters and the request log of a running proxy."""
    import http.client
    u = urllib.parse.urlsplit(proxy_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", CONTROL)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="faultproxy.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT of the real server")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--rules", default="[]", help="JSON list of rules")
    ap.add_argument("--rules-file", help="JSON file of rules, read again whenever it changes")
    a = ap.parse_args(argv)
    try:
        proxy = Proxy(a.upstream, json.loads(a.rules), a.rules_file)
    except ValueError as e:
        print("faultproxy.py: %s" % e, file=sys.stderr)
        return 2

    def ready(port):
        print("SP_TEST_PROXY_URL=http://127.0.0.1:%d" % port, flush=True)

    asyncio.run(serve(proxy, a.port, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
