#!/usr/bin/env python3
"""A SigV4-verifying proxy for kiln's S3 tests (loopback only).

s3rver checks access keys but not SigV4 signatures, so this proxy sits
between kiln and s3rver and recomputes the signature of every request with
an independent implementation, botocore's S3SigV4Auth, from the request's
method, path, query, the headers named in SignedHeaders and the secret it
was given. A request whose signature differs is answered 403
SignatureDoesNotMatch (S3's XML error); one whose x-amz-content-sha256 is
not the SHA-256 of the body (and not UNSIGNED-PAYLOAD) is answered 400
XAmzContentSHA256Mismatch. Everything else is forwarded to s3rver.

It can also inject faults, for retry tests:
  --drop-get-after N       the first GET answer with a body longer than N
                           bytes is cut after N bytes (connection closed)
  --part-status N:CODE:K   answer PUT ...?partNumber=N with HTTP CODE, K
                           times (K = 0: always)
  --token T                require x-amz-security-token: T

With --tls CERT KEY it serves HTTPS (the PEM certificate chain CERT and its
private key KEY) instead of plain HTTP; s3rver behind it stays plain HTTP.
A client that gives up during the handshake (e.g. it does not trust CERT)
is logged as "TLS-FAIL <reason>".

It prints "PORT <n>" on stdout once it listens on 127.0.0.1:<n>, and logs
"METHOD PATH STATUS" per request to --log.
"""
import argparse
import datetime
import hashlib
import http.client
import http.server
import re
import ssl
import sys
import threading
import urllib.parse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "te", "trailer",
              "upgrade", "proxy-connection"}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.dropped = False
        self.part_hits = 0
        self.log = open(args.log, "a", buffering=1) if args.log else None

    def write_log(self, line):
        if self.log:
            with self.lock:
                self.log.write(line + "\n")


def s3_error(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            '<Message>%s</Message><RequestId>proxy</RequestId></Error>'
            % (code, message)).encode()


def expected_signature(method, path, headers, signed, access_key, secret, region, amz_date):
    """The signature botocore computes for this request."""
    wanted = {h: headers.get(h, "") for h in signed}
    req = AWSRequest(method=method, url="http://" + headers.get("host", "") + path,
                     headers=wanted)
    req.context["timestamp"] = amz_date
    signer = S3SigV4Auth(Credentials(access_key, secret), "s3", region)
    canonical = signer.canonical_request(req)
    sts = signer.string_to_sign(req, canonical)
    return signer.signature(sts, req), signer.signed_headers(signer.headers_to_sign(req))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None  # set in main

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def _reply(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.state.write_log("%s %s %d" % (self.command, self.path, status))

    def _check_auth(self, body):
        """None if the request is properly signed, else (status, code, message)."""
        args = self.state.args
        auth = self.headers.get("Authorization", "")
        m = AUTH_RE.match(auth)
        if not m:
            return 403, "AccessDenied", "missing or malformed SigV4 Authorization header"
        access_key, date, region, service, signed, signature = m.groups()
        headers = {k.lower(): v for k, v in self.headers.items()}
        amz_date = headers.get("x-amz-date", "")
        if region != args.region or service != "s3" or amz_date[:8] != date:
            return 403, "SignatureDoesNotMatch", "bad credential scope " + auth
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        if abs((datetime.datetime.utcnow() - when).total_seconds()) > 900:
            return 403, "RequestTimeTooSkewed", "x-amz-date is too far from now"
        if args.token is not None and headers.get("x-amz-security-token") != args.token:
            return 403, "InvalidToken", "the security token is not the expected one"
        payload = headers.get("x-amz-content-sha256")
        if payload is None:
            return 400, "InvalidRequest", "missing x-amz-content-sha256"
        if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
            return 400, "XAmzContentSHA256Mismatch", "x-amz-content-sha256 is not the body's"
        names = signed.split(";")
        want, want_signed = expected_signature(self.command, self.path, headers, names,
                                               access_key, args.secret, args.region, amz_date)
        if want != signature or want_signed != signed:
            return 403, "SignatureDoesNotMatch", (
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method.")
        return None

    def _injected(self):
        spec = self.state.args.part_status
        if not spec or self.command != "PUT":
            return None
        number, status, times = (int(x) for x in spec.split(":"))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if query.get("partNumber") != [str(number)]:
            return None
        with self.state.lock:
            if times and self.state.part_hits >= times:
                return None
            self.state.part_hits += 1
        code = {500: "InternalError", 503: "SlowDown"}.get(status, "InjectedFault")
        return status, code, "fault injected by the test proxy"

    def _forward(self, body):
        up = urllib.parse.urlsplit(self.state.args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data_len = resp.getheader("Content-Length")
        data = None
        if data_len is None and self.command != "HEAD":
            data = resp.read()
            data_len = str(len(data))
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if data_len is not None:
            self.send_header("Content-Length", data_len)
        self.end_headers()
        self.state.write_log("%s %s %d" % (self.command, self.path, resp.status))
        if self.command == "HEAD":
            conn.close()
            return
        self._stream(resp, data, int(data_len or 0))
        conn.close()

    def _stream(self, resp, data, length):
        limit = None
        args = self.state.args
        if (self.command == "GET" and args.drop_get_after is not None and 200 <= resp.status < 300
                and length > args.drop_get_after):
            with self.state.lock:
                if not self.state.dropped:
                    self.state.dropped = True
                    limit = args.drop_get_after
        sent = 0
        while True:
            chunk = data if data is not None else resp.read(65536)
            data = b"" if data is not None else None
            if not chunk:
                break
            if limit is not None and sent + len(chunk) >= limit:
                self.wfile.write(chunk[:limit - sent])
                self.wfile.flush()
                self.state.write_log("DROPPED after %d bytes" % limit)
                self.close_connection = True
                return
            self.wfile.write(chunk)
            sent += len(chunk)

    def _handle(self):
        body = self._body()
        failure = self._check_auth(body) or self._injected()
        if failure:
            status, code, message = failure
            self._reply(status, s3_error(code, message), {"Content-Type": "application/xml"})
            return
        self._forward(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class TLSServer(http.server.ThreadingHTTPServer):
    """Accepts plain TCP and does the TLS handshake in the request's thread,
    so a client that hangs or fails mid-handshake blocks nobody else."""
    context = None  # an ssl.SSLContext, set in main
    log_state = None

    def finish_request(self, request, client_address):
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError as e:  # ssl.SSLError included
            self.log_state.write_log("TLS-FAIL %s" % (getattr(e, "reason", None) or e))
            return  # the caller shuts the plain socket down
        try:
            super().finish_request(tls, client_address)
        finally:
            self.shutdown_request(tls)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--token")
    ap.add_argument("--log")
    ap.add_argument("--drop-get-after", type=int)
    ap.add_argument("--part-status")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    Handler.state = State(args)
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        TLSServer.context = ctx
        TLSServer.log_state = Handler.state
        server = TLSServer(("127.0.0.1", 0), Handler)
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
