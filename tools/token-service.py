#!/usr/bin/env python3
"""A registry token service for libpht's tests, in the role Harbor's core
plays in production: it answers the registry's `WWW-Authenticate: Bearer`
challenge by issuing JWTs (ES256, an x5c header naming the signing
certificate) that docker-registry's `auth: token` verifies against its
`rootcertbundle`.

    token-service.py --listen 127.0.0.1:PORT --cert C --key K \
        --signing-cert SC --signing-key SK --issuer I --service S \
        --users DIR --log FILE

GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...] with HTTP
basic auth (or none: the anonymous user) answers
{"token", "access_token", "expires_in", "issued_at"}. GET /health answers 200.

Users come from every DIR/*.json, read on each request, so a test adds the
users it needs by writing a file (and removes it after):

    {"users": {"robot$station_2": {
        "password": "...",
        "access": {"station_2/*": ["pull", "push"], "station_1/train": ["pull"]},
        "revoked": ["station_3/*"],    # a scope naming these: 403
        "ttl": 300,                    # seconds the token is valid
        "expires_in": 300,             # what the answer claims (default: ttl)
        "expired_first": 1,            # the first N tokens are already expired
        "expired": false               # every token is already expired
    }}}

Patterns are shell globs (fnmatch). A wrong password answers 401, a revoked
repository 403; actions not granted are left out of the token (the registry
then answers 401 insufficient_scope). Each request appends one JSON line to
the log: user, scopes asked, access granted, status; never a password or a
token.
"""
import argparse
import base64
import fnmatch
import glob
import hmac
import http.server
import json
import os
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Issuer:
    def __init__(self, args):
        with open(args.signing_key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(self.key, ec.EllipticCurvePrivateKey):
            raise SystemExit("token-service: the signing key must be an EC P-256 key")
        with open(args.signing_cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.issuer = args.issuer
        self.service = args.service
        self.users_dir = args.users
        self.log_path = args.log
        self.lock = threading.Lock()
        self.issued = {}  # user -> tokens issued so far

    def users(self):
        out = {}
        for path in sorted(glob.glob(os.path.join(self.users_dir, "*.json"))):
            try:
                with open(path, "r", encoding="utf-8") as f:
                    out.update(json.load(f).get("users", {}))
            except (OSError, ValueError):
                continue  # being written, or removed meanwhile
        return out

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "ES256", "x5c": self.x5c}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        der = self.key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def log(self, entry):
        if not self.log_path:
            return
        with self.lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def parse_scope(scope):
    """'repository:a/b:pull,push' -> ('repository', 'a/b', ['pull', 'push'])."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    return parts[0], ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]


def matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pht-test-token-service"

    def log_message(self, fmt, *args):  # no access log on stderr
        pass

    def answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message, entry, headers=None):
        entry["status"] = status
        self.server.issuer.log(entry)
        self.answer(status, {"errors": [{"code": code, "message": message}]}, headers)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            return self.answer(200, {"ok": True})
        if url.path != "/token":
            return self.answer(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
        iss = self.server.issuer
        query = urllib.parse.parse_qs(url.query)
        scopes = []
        for s in query.get("scope", []):
            scopes.extend(s.split(" "))
        scopes = [s for s in scopes if s]
        user, password = None, None
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except ValueError:
                user = ""
        entry = {"user": user, "scopes": scopes, "account": query.get("account", [None])[0]}
        if query.get("service", [None])[0] != iss.service:
            return self.error(400, "INVALID_REQUEST", "unknown service", entry)
        users = iss.users()
        if user is None:
            conf = users.get("", {})  # the anonymous user, if a test configured one
        else:
            conf = users.get(user)
            good = conf is not None and hmac.compare_digest(
                str(conf.get("password", "")).encode(), password.encode())
            if not good:
                return self.error(401, "UNAUTHORIZED", "invalid username or password", entry,
                                  {"WWW-Authenticate": 'Basic realm="pht-test-token-service"'})
        access = []
        for s in scopes:
            p = parse_scope(s)
            if p is None:
                return self.error(400, "INVALID_REQUEST", "malformed scope", entry)
            kind, name, actions = p
            if kind != "repository":
                continue
            if matches(name, conf.get("revoked", [])):
                return self.error(403, "DENIED", "access to repository %s is revoked" % name, entry)
            granted = set()
            for pattern, allowed in conf.get("access", {}).items():
                if fnmatch.fnmatchcase(name, pattern):
                    granted.update(allowed)
            acts = [a for a in actions if a in granted or ("*" in granted)]
            if acts:
                access.append({"type": "repository", "name": name, "actions": acts})
        with iss.lock:
            n = iss.issued.get(user or "", 0)
            iss.issued[user or ""] = n + 1
        ttl = int(conf.get("ttl", 300))
        now = int(time.time())
        expired = bool(conf.get("expired")) or n < int(conf.get("expired_first", 0))
        # The registry allows 60 s of clock skew: an expired token ends well before.
        exp = now - 3600 if expired else now + ttl
        claims = {"iss": iss.issuer, "sub": user or "", "aud": iss.service, "exp": exp,
                  "nbf": exp - ttl - 7200 if expired else now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        token = iss.sign(claims)
        entry.update({"status": 200, "granted": access, "expired": expired})
        iss.log(entry)
        self.answer(200, {"token": token, "access_token": token,
                          "expires_in": int(conf.get("expires_in", ttl)),
                          "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description="registry token service for libpht's tests")
    ap.add_argument("--listen", required=True, help="127.0.0.1:PORT")
    ap.add_argument("--cert", help="TLS server certificate (PEM); plain HTTP without it")
    ap.add_argument("--key", help="TLS server key (PEM)")
    ap.add_argument("--signing-cert", required=True)
    ap.add_argument("--signing-key", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--users", required=True, help="directory of *.json user files")
    ap.add_argument("--log", help="append one JSON line per request here")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("token-service: listens on loopback only")
    srv = Server((host, int(port)), Handler)
    srv.issuer = Issuer(args)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        # The handshake runs in the request's thread, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    sys.stderr.write("token-service: listening on %s\n" % args.listen)
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
