#!/usr/bin/env python3
"""A receiver of signals written against the specifications, not against sessiond: it
verifies every Security Event Token (RFC 8417 / 8935, SSF 1.0, CAEP) and every logout token
(OpenID Connect Back-Channel Logout 1.0) with PyJWT against the published JWKS, and records
what it accepted.

    receiver.py --jwks-url URL --issuer ISS [--port 0] [--tls-cert PEM --tls-key PEM]

Prints `PORT <n>` on its first line; with a certificate it also serves https on another
port, printed as `TLS_PORT <n>` on the second line. Endpoints (on both):
    POST /set/<name>       a pushed SET (application/secevent+jwt); 202, or 400 {err, description}
    POST /logout/<client>  a logout token (form logout_token); 200, or 400 {error, error_description}
    POST /down/<name>      the receiver for <name> answers 503 from now on; /up/<name> heals it
    POST /jwks/url         the JWKS is at the URL in the body from now on
    POST /tls/use          the https port presents the certificate and key whose paths are
                           the body's two lines from the next handshake on
    GET  /received         every accepted claim set: {"<name>": [claims, ...], ...}
    POST /verify           {"token": "...", "kind": "set"|"logout", "aud": "..."} -> claims or 400
"""

import argparse
import json
import ssl
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
BACKCHANNEL_LOGOUT = "http://schemas.openid.net/event/backchannel-logout"
ALGORITHMS = ["RS256", "ES256", "EdDSA"]


class Invalid(Exception):
    pass


class State:
    def __init__(self, jwks_url, issuer):
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.lock = threading.Lock()
        self.received = {}
        self.down = set()
        self.tls_context = None

    def key_for(self, token):
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if not kid:
            raise Invalid("no kid in the JOSE header")
        if header.get("alg") not in ALGORITHMS:
            raise Invalid("unexpected alg %r" % header.get("alg"))
        # The published JWKS, fetched fresh: a rotated key must be there.
        with urllib.request.urlopen(self.jwks_url, timeout=5) as response:
            jwks = jwt.PyJWKSet.from_json(response.read().decode())
        for key in jwks.keys:
            if key.key_id == kid:
                return header, key
        raise Invalid("kid %s is not in the JWKS" % kid)

    def verify_set(self, token, audience=None):
        header, key = self.key_for(token)
        if header.get("typ") != "secevent+jwt":
            raise Invalid("typ must be secevent+jwt, got %r" % header.get("typ"))
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[header["alg"]],
            issuer=self.issuer,
            options={"verify_aud": False, "require": ["iss", "iat", "jti", "aud"]},
        )
        if audience is not None and claims["aud"] != audience:
            raise Invalid("aud %r is not %r" % (claims["aud"], audience))
        if "sub" in claims or "exp" in claims:
            raise Invalid("an SSF SET has neither sub nor exp")
        events = claims.get("events")
        if not isinstance(events, dict) or len(events) != 1:
            raise Invalid("events must hold exactly one event")
        sub_id = claims.get("sub_id")
        if not isinstance(sub_id, dict) or "format" not in sub_id:
            raise Invalid("sub_id is required")
        (event_type, event), = events.items()
        if event_type == SESSION_REVOKED:
            if sub_id["format"] != "complex" or sub_id.get("session", {}).get("format") != "opaque":
                raise Invalid("session-revoked names the session in a complex subject")
            if sub_id.get("user", {}).get("format") != "opaque":
                raise Invalid("session-revoked names the user")
            if event.get("initiating_entity") not in ("admin", "user", "policy", "system"):
                raise Invalid("initiating_entity")
            if not event.get("reason_admin") or not isinstance(event.get("event_timestamp"), int):
                raise Invalid("reason_admin and event_timestamp are required")
        elif event_type == CREDENTIAL_CHANGE:
            if event.get("credential_type") != "password" or "change_type" not in event:
                raise Invalid("credential-change members")
        elif event_type in (VERIFICATION, STREAM_UPDATED):
            if sub_id != {"format": "opaque", "id": sub_id.get("id")}:
                raise Invalid("the subject of a stream event is the stream, opaque")
            if event_type == STREAM_UPDATED and event.get("status") not in (
                "enabled", "paused", "disabled"
            ):
                raise Invalid("stream-updated needs a status")
        else:
            raise Invalid("unknown event type %s" % event_type)
        return claims

    def verify_logout(self, token, client):
        header, key = self.key_for(token)
        if header.get("typ") != "logout+jwt":
            raise Invalid("typ must be logout+jwt, got %r" % header.get("typ"))
        # The server under test runs on a clock of its own: exp is checked against iat.
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[header["alg"]],
            issuer=self.issuer,
            audience=client,
            options={"verify_exp": False, "verify_iat": False,
                     "require": ["iss", "aud", "iat", "exp", "jti"]},
        )
        if not 0 < claims["exp"] - claims["iat"] <= 120:
            raise Invalid("exp must be shortly after iat")
        if "nonce" in claims:
            raise Invalid("nonce is prohibited")
        if "sub" not in claims and "sid" not in claims:
            raise Invalid("sub or sid is required")
        if claims.get("events", {}).get(BACKCHANNEL_LOGOUT) != {}:
            raise Invalid("the back-channel logout event is required")
        return claims

    def record(self, name, claims):
        with self.lock:
            self.received.setdefault(name, []).append(claims)


def handler(state):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Language", "en")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length)

        def do_GET(self):
            if self.path == "/received":
                with state.lock:
                    return self.reply(200, state.received)
            self.reply(404, {})

        def do_POST(self):
            parts = self.path.strip("/").split("/")
            if parts == ["verify"]:
                parts = ["verify", ""]
            if len(parts) != 2:
                return self.reply(404, {})
            kind, name = parts
            raw = self.body()
            if kind == "down":
                state.down.add(name)
                return self.reply(200, {})
            if kind == "up":
                state.down.discard(name)
                return self.reply(200, {})
            if kind == "jwks":
                # The JWKS moved (a restarted server on another port): /jwks/x, body = URL.
                state.jwks_url = raw.decode()
                return self.reply(200, {})
            if kind == "tls":
                cert, key = raw.decode().split("\n")[:2]
                state.tls_context.load_cert_chain(cert, key)
                return self.reply(200, {})
            if kind == "verify":
                request = json.loads(raw)
                try:
                    if request["kind"] == "set":
                        claims = state.verify_set(request["token"], request.get("aud"))
                    else:
                        claims = state.verify_logout(request["token"], request["aud"])
                    return self.reply(200, claims)
                except (Invalid, jwt.PyJWTError) as e:
                    return self.reply(400, {"err": "invalid_request", "description": str(e)})
            if name in state.down:
                return self.reply(503, {})
            if kind == "set":
                if self.headers.get("Content-Type") != "application/secevent+jwt":
                    return self.reply(400, {"err": "invalid_request", "description": "content type"})
                expected = "Bearer " + name
                if self.headers.get("Authorization") != expected:
                    return self.reply(400, {"err": "authentication_failed", "description": "authorization"})
                try:
                    claims = state.verify_set(raw.decode())
                except (Invalid, jwt.PyJWTError) as e:
                    return self.reply(400, {"err": "invalid_request", "description": str(e)})
                state.record(name, claims)
                return self.reply(202)
            if kind == "logout":
                if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                    return self.reply(400, {"error": "invalid_request", "error_description": "content type"})
                form = parse_qs(raw.decode())
                tokens = form.get("logout_token", [])
                if len(tokens) != 1:
                    return self.reply(400, {"error": "invalid_request", "error_description": "logout_token"})
                try:
                    claims = state.verify_logout(tokens[0], name)
                except (Invalid, jwt.PyJWTError) as e:
                    return self.reply(400, {"error": "invalid_request", "error_description": str(e)})
                state.record(name, claims)
                return self.reply(200)
            self.reply(404, {})

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jwks-url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    state = State(args.jwks_url, args.issuer)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(state))
    print("PORT %d" % server.server_address[1], flush=True)
    if args.tls_cert:
        state.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        state.tls_context.load_cert_chain(args.tls_cert, args.tls_key)
        tls = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
        # A handshake the client refuses fails in accept(), an OSError the server survives.
        tls.socket = state.tls_context.wrap_socket(tls.socket, server_side=True)
        print("TLS_PORT %d" % tls.server_address[1], flush=True)
        threading.Thread(target=tls.serve_forever, daemon=True).start()
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
