#!/usr/bin/env python3
"""Small network faults in front of a real registry, for the registry specs.

    netfault.py cut --upstream HOST:PORT --after N [--cuts K] [--direction down|up]
    netfault.py redirect --upstream https://HOST:PORT --ca CA [--redirect-host localhost]
    netfault.py status --upstream http://HOST:PORT --status 503 --match REGEX [--times K]
    netfault.py stall

Each listens on 127.0.0.1 (a free port), write "PORT" (redirect: "PORT
PORT2") to --port-file once listening, and append one JSON line per event
to --log. They run until killed.

cut: a TCP proxy. Of the first K connections (default: all), each is reset
(RST, as a crashed peer or a broken link does) after N bytes went from the
registry to the client (down) or from the client to the registry (up).

redirect: an HTTP proxy to the registry that answers every GET or HEAD of a
blob with a 307 to a second listener on --redirect-host (another host name
for the same machine), as registries that keep blobs in object storage do.
The second listener records whether an Authorization header came (it must
not) and serves the blob, fetched from the registry with the credentials in
$NETFAULT_CREDS (USER:PASS). Neither listener logs header values.

status: an HTTP proxy to the registry that answers the first K requests
(default: all) whose path matches REGEX with the given status (429 adds
Retry-After: 0) and a registry-style JSON error body, and relays the rest.

stall: an HTTP server (a wedged Docker daemon) that reads each request's
head, answers "200 OK" with headers announcing a JSON body of 1000 bytes and
one byte of it, then holds the connection open without another byte.
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import stat
import struct
import sys
import threading

LOCK = threading.Lock()
LOG = None


def log(entry):
    with LOCK, open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def write_port_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.rename(tmp, path)


# ---- cut --------------------------------------------------------------------

def reset(sock):
    """Close with an RST. shutdown(SHUT_RD) first wakes the other pump blocked
    in recv() on it; a plain close() would leave that call holding the socket
    open, and the peer would wait for ever."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


def serve_cut(args):
    host, _, port = args.upstream.rpartition(":")
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    write_port_file(args.port_file, str(lst.getsockname()[1]))
    count = [0]

    def handle(client, n):
        up = socket.create_connection((host, int(port)))
        cut = args.cuts < 0 or n <= args.cuts
        moved = [0]
        done = threading.Event()

        def pump(src, dst, counted):
            broke = False
            try:
                while not done.is_set():
                    data = src.recv(65536)
                    if not data:
                        break
                    if counted and cut and moved[0] + len(data) >= args.after:
                        dst.sendall(data[: max(0, args.after - moved[0])])
                        moved[0] = args.after
                        log({"connection": n, "event": "cut", "bytes": moved[0],
                             "direction": args.direction})
                        broke = True
                        break
                    dst.sendall(data)
                    if counted:
                        moved[0] += len(data)
            except OSError:
                pass
            if done.is_set():
                return
            done.set()
            for s in (client, up):
                if broke:
                    reset(s)
                else:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

        log({"connection": n, "event": "open", "cut": cut})
        a = threading.Thread(target=pump, args=(up, client, args.direction == "down"), daemon=True)
        b = threading.Thread(target=pump, args=(client, up, args.direction == "up"), daemon=True)
        a.start()
        b.start()

    while True:
        client, _ = lst.accept()
        count[0] += 1
        threading.Thread(target=handle, args=(client, count[0]), daemon=True).start()


# ---- redirect ---------------------------------------------------------------

BLOB = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate", "host", "content-length"}


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def upstream_conn(args):
    u = args.upstream
    scheme, _, hostport = u.partition("://")
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=args.ca)
        return http.client.HTTPSConnection(hostport, context=ctx, timeout=30)
    return http.client.HTTPConnection(hostport, timeout=30)


def make_front(args, storage_port):
    class Front(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def relay(self):
            path = self.path.split("?", 1)[0]
            m = BLOB.match(path)
            log({"listener": "registry", "method": self.command, "path": path,
                 "authorization": "Authorization" in self.headers})
            if m and self.command in ("GET", "HEAD"):
                loc = "http://%s:%d/%s/blobs/%s" % (args.redirect_host, storage_port,
                                                    m.group(1), m.group(2))
                self.send_response(307)
                self.send_header("Location", loc)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.forward()

        def forward(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            conn = upstream_conn(args)
            hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            mine = "http://127.0.0.1:%d" % self.server.server_address[1]
            for k, v in resp.getheaders():
                if k.lower() in HOP:
                    continue
                if k.lower() == "location" and v.startswith(args.upstream):
                    v = mine + v[len(args.upstream):]
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay

    return Front


def make_storage(args):
    creds = os.environ.get("NETFAULT_CREDS", "")

    class Storage(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def serve(self):
            log({"listener": "storage", "method": self.command, "path": self.path,
                 "authorization": "Authorization" in self.headers,
                 "host": self.headers.get("Host", "")})
            m = re.match(r"^/(.+)/blobs/(sha256:[0-9a-f]{64})$", self.path)
            if not m:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            conn = upstream_conn(args)
            hdrs = {}
            if creds:
                hdrs["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
            if self.headers.get("Range"):
                hdrs["Range"] = self.headers["Range"]
            conn.request("GET", "/v2/%s/blobs/%s" % (m.group(1), m.group(2)), headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k in ("Content-Type", "Content-Range", "Docker-Content-Digest"):
                if resp.getheader(k):
                    self.send_header(k, resp.getheader(k))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = serve

    return Storage


def make_status(args):
    left = [args.times]
    base = make_front(args, 0)

    class Status(base):
        def relay(self):
            path = self.path.split("?", 1)[0]
            hit = re.search(args.match, path) is not None
            with LOCK:
                fail = hit and left[0] != 0
                if fail and left[0] > 0:
                    left[0] -= 1
            log({"listener": "registry", "method": self.command, "path": path,
                 "status": args.status if fail else None})
            if not fail:
                return self.forward()
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            body = json.dumps({"errors": [{"code": "UNAVAILABLE" if args.status != 429
                                           else "TOOMANYREQUESTS",
                                           "message": "netfault says %d" % args.status}]}).encode()
            self.send_response(args.status)
            if args.status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay

    return Status


def serve_status(args):
    front = Server(("127.0.0.1", 0), make_status(args))
    write_port_file(args.port_file, str(front.server_address[1]))
    front.serve_forever()


def serve_redirect(args):
    storage = Server(("127.0.0.1", 0), make_storage(args))
    front = Server(("127.0.0.1", 0), make_front(args, storage.server_address[1]))
    threading.Thread(target=storage.serve_forever, daemon=True).start()
    write_port_file(args.port_file, "%d %d" % (front.server_address[1], storage.server_address[1]))
    front.serve_forever()


# ---- stall ------------------------------------------------------------------

def serve_stall(args):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    write_port_file(args.port_file, str(lst.getsockname()[1]))
    held = []
    while True:
        conn, _ = lst.accept()
        head = b""
        conn.settimeout(5)
        try:
            while b"\r\n\r\n" not in head:
                got = conn.recv(65536)
                if not got:
                    break
                head += got
        except OSError:
            pass
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        log({"event": "stall", "request": line})
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{")
        except OSError:
            pass
        held.append(conn)  # open and silent until the server goes


def close_inherited_sockets():
    """Sockets the spec's process had open (its own registry connections)
    must not stay open in here."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            pass


def main():
    global LOG
    close_inherited_sockets()
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cut")
    c.add_argument("--upstream", required=True)
    c.add_argument("--after", type=int, required=True)
    c.add_argument("--cuts", type=int, default=-1)
    c.add_argument("--direction", choices=("down", "up"), default="down")
    r = sub.add_parser("redirect")
    r.add_argument("--upstream", required=True)
    r.add_argument("--ca")
    r.add_argument("--redirect-host", default="localhost")
    t = sub.add_parser("status")
    t.add_argument("--upstream", required=True)
    t.add_argument("--ca")
    t.add_argument("--status", type=int, required=True)
    t.add_argument("--match", required=True)
    t.add_argument("--times", type=int, default=-1)
    s = sub.add_parser("stall")
    s.add_argument("--upstream")
    for p in (c, r, t, s):
        p.add_argument("--port-file", required=True)
        p.add_argument("--log", required=True)
    args = ap.parse_args()
    LOG = args.log
    open(LOG, "a").close()
    try:
        {"cut": serve_cut, "redirect": serve_redirect, "status": serve_status,
         "stall": serve_stall}[args.mode](args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
