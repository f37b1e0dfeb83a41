"""Interop: the official ZITADEL Python SDK (PyPI `zitadel-client`, pinned in requirements.txt).

The SDK is OpenAPI-generated but speaks the Connect protocol's unary JSON form: every call is
`POST {host}/zitadel.session.<v>.SessionService/<Method>` with `Content-Type` and `Accept`
`application/json`, the request message as proto3 JSON, and `Authorization: Bearer <PAT>`
from `Zitadel.with_access_token(host, token)`. Errors surface as `ApiError` with the HTTP
status (`code`) and the decoded Connect error JSON (`response_body`).

Runs create -> get -> list (userIdQuery, idsQuery) -> delete -> get (NotFound) for v2
(`zitadel.sessions`) and v2beta (`zitadel.beta_sessions`); then second factors through
`zitadel.users` with the user's own session token (RegisterTOTP, VerifyTOTPRegistration with
a `pyotp` code, GenerateRecoveryCodes) and their checks in SetSession (a replayed TOTP code
and a used recovery code refused). Last, one-time codes by email against a server that sends
them to an SMTP sink run here (`aiosmtpd`): AddHumanUser with a verified email, AddOTPEmail,
CreateSession with an email challenge, the code read from the received mail and checked in
SetSession (once).
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
import sys
import time

import pyotp
from zitadel_client import Zitadel
from zitadel_client.exceptions import ApiError
from zitadel_client.models import (
    BetaSessionServiceCheckPassword,
    BetaSessionServiceChecks,
    BetaSessionServiceCheckUser,
    BetaSessionServiceCreateSessionRequest,
    BetaSessionServiceDeleteSessionRequest,
    BetaSessionServiceGetSessionRequest,
    BetaSessionServiceIDsQuery,
    BetaSessionServiceListSessionsRequest,
    BetaSessionServiceSearchQuery,
    BetaSessionServiceUserIDQuery,
    SessionServiceCheckPassword,
    SessionServiceChecks,
    SessionServiceCheckUser,
    SessionServiceCreateSessionRequest,
    SessionServiceDeleteSessionRequest,
    SessionServiceGetSessionRequest,
    SessionServiceIDsQuery,
    SessionServiceListSessionsRequest,
    SessionServiceSearchQuery,
    SessionServiceUserIDQuery,
    SessionServiceCheckRecoveryCode,
    SessionServiceCheckTOTP,
    SessionServiceSetSessionRequest,
    UserServiceGenerateRecoveryCodesRequest,
    UserServiceRegisterTOTPRequest,
    UserServiceVerifyTOTPRegistrationRequest,
)

from sessiond_fixture import LOGIN_NAME, PASSWORD, Sessiond, check

MODELS = {
    "v2": dict(
        CheckPassword=SessionServiceCheckPassword,
        Checks=SessionServiceChecks,
        CheckUser=SessionServiceCheckUser,
        Create=SessionServiceCreateSessionRequest,
        Delete=SessionServiceDeleteSessionRequest,
        Get=SessionServiceGetSessionRequest,
        IDsQuery=SessionServiceIDsQuery,
        List=SessionServiceListSessionsRequest,
        SearchQuery=SessionServiceSearchQuery,
        UserIDQuery=SessionServiceUserIDQuery,
    ),
    "v2beta": dict(
        CheckPassword=BetaSessionServiceCheckPassword,
        Checks=BetaSessionServiceChecks,
        CheckUser=BetaSessionServiceCheckUser,
        Create=BetaSessionServiceCreateSessionRequest,
        Delete=BetaSessionServiceDeleteSessionRequest,
        Get=BetaSessionServiceGetSessionRequest,
        IDsQuery=BetaSessionServiceIDsQuery,
        List=BetaSessionServiceListSessionsRequest,
        SearchQuery=BetaSessionServiceSearchQuery,
        UserIDQuery=BetaSessionServiceUserIDQuery,
    ),
}


def flow(version: str, api, server: Sessiond) -> None:
    m = MODELS[version]
    created = api.create_session(
        m["Create"](
            checks=m["Checks"](
                user=m["CheckUser"](login_name=LOGIN_NAME),
                password=m["CheckPassword"](password=PASSWORD),
            )
        )
    )
    sid = created.session_id
    check(bool(sid), f"{version} create: no sessionId in {created!r}")
    check(bool(created.session_token), f"{version} create: no sessionToken")
    check(created.details is not None and created.details.change_date is not None,
          f"{version} create: no details.changeDate in {created!r}")

    got = api.get_session(m["Get"](session_id=sid))
    check(got.session is not None and got.session.id == sid,
          f"{version} get: expected id {sid}, got {got!r}")
    factors = got.session.factors
    check(factors is not None and factors.user is not None
          and factors.user.login_name == LOGIN_NAME and factors.user.id == server.user_id,
          f"{version} get: user factor wrong: {factors!r}")
    check(factors.password is not None and factors.password.verified_at is not None,
          f"{version} get: password factor not verified: {factors!r}")

    by_user = api.list_sessions(m["List"](
        queries=[m["SearchQuery"](user_id_query=m["UserIDQuery"](id=server.user_id))]))
    check(any(s.id == sid for s in by_user.sessions or []),
          f"{version} list(userIdQuery): {sid} missing in {by_user!r}")
    by_id = api.list_sessions(m["List"](
        queries=[m["SearchQuery"](ids_query=m["IDsQuery"](ids=[sid]))]))
    check([s.id for s in by_id.sessions or []] == [sid],
          f"{version} list(idsQuery): expected exactly [{sid}], got {by_id!r}")

    deleted = api.delete_session(m["Delete"](session_id=sid))
    check(deleted.details is not None and deleted.details.change_date is not None,
          f"{version} delete: no details.changeDate in {deleted!r}")

    try:
        api.get_session(m["Get"](session_id=sid))
    except ApiError as e:
        body = e.response_body if isinstance(e.response_body, dict) else {}
        check(e.code == 404 and body.get("code") == "not_found",
              f"{version} get after delete: expected 404 not_found, got {e.code} {e.response_body!r}")
    else:
        raise AssertionError(f"{version} get after delete: succeeded, expected NotFound")
    print(f"  ok zitadel-client {version} (Connect JSON): session {sid}")


def refused(call, status: int, code: str, what: str) -> None:
    try:
        call()
    except ApiError as e:
        body = e.response_body if isinstance(e.response_body, dict) else {}
        check(e.code == status and body.get("code") == code,
              f"{what}: expected {status} {code}, got {e.code} {e.response_body!r}")
    else:
        raise AssertionError(f"{what}: succeeded, expected {code}")


def factors_flow(server: Sessiond) -> None:
    admin = Zitadel.with_access_token(server.url, server.token)
    created = admin.sessions.create_session(SessionServiceCreateSessionRequest(
        checks=SessionServiceChecks(
            user=SessionServiceCheckUser(login_name=LOGIN_NAME),
            password=SessionServiceCheckPassword(password=PASSWORD),
        )))
    sid = created.session_id
    # The user enrolls its own factors with its session token as the bearer.
    own = Zitadel.with_access_token(server.url, created.session_token)
    registered = own.users.register_totp(UserServiceRegisterTOTPRequest(user_id=server.user_id))
    check(registered.uri.startswith("otpauth://totp/") and f"secret={registered.secret}" in registered.uri,
          f"RegisterTOTP: unexpected uri {registered.uri!r}")
    totp = pyotp.TOTP(registered.secret)
    now = time.time()
    own.users.verify_totp_registration(UserServiceVerifyTOTPRegistrationRequest(
        user_id=server.user_id, code=totp.at(now)))

    # The code that verified the enrollment is spent; the next step's code (within the
    # skew) passes once.
    code = totp.at(now + 30)
    set_totp = lambda: admin.sessions.set_session(SessionServiceSetSessionRequest(
        session_id=sid, checks=SessionServiceChecks(totp=SessionServiceCheckTOTP(code=code))))
    # Every change of the session rotates its token: the user goes on with the new one.
    own = Zitadel.with_access_token(server.url, set_totp().session_token)
    refused(set_totp, 400, "invalid_argument", "SetSession with a replayed TOTP code")

    codes = own.users.generate_recovery_codes(UserServiceGenerateRecoveryCodesRequest(
        user_id=server.user_id, count=2)).recovery_codes
    check(len(codes) == 2, f"GenerateRecoveryCodes: expected 2 codes, got {codes!r}")
    set_code = lambda: admin.sessions.set_session(SessionServiceSetSessionRequest(
        session_id=sid, checks=SessionServiceChecks(
            recovery_code=SessionServiceCheckRecoveryCode(code=codes[0]))))
    set_code()
    refused(set_code, 400, "invalid_argument", "SetSession with a used recovery code")

    factors = admin.sessions.get_session(SessionServiceGetSessionRequest(session_id=sid)).session.factors
    check(factors.totp is not None and factors.totp.verified_at is not None,
          f"factors.totp not verified: {factors!r}")
    check(factors.recovery_code is not None and factors.recovery_code.verified_at is not None,
          f"factors.recoveryCode not verified: {factors!r}")
    print(f"  ok zitadel-client v2 (Connect JSON): TOTP and recovery codes on session {sid}")


class Inbox:
    """aiosmtpd handler keeping each received message's text."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message.get_content())
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def email_code_flow() -> None:
    from aiosmtpd.controller import Controller
    from zitadel_client.models import (
        SessionServiceCheckOTP,
        SessionServiceOTPEmail,
        SessionServiceRequestChallenges,
        SessionServiceSendCode,
        UserServiceAddHumanUserRequest,
        UserServiceAddOTPEmailRequest,
        UserServicePassword,
        UserServiceSetHumanEmail,
        UserServiceSetHumanProfile,
    )

    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        args = ("--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-security", "plain")
        perms = "session.read,session.write,session.delete,user.read,user.write"
        with Sessiond(serve_args=args, permissions=perms) as server:
            admin = Zitadel.with_access_token(server.url, server.token)
            user_id = admin.users.add_human_user(UserServiceAddHumanUserRequest(
                username="grace@example.com",
                profile=UserServiceSetHumanProfile(given_name="Grace", family_name="Hopper"),
                email=UserServiceSetHumanEmail(email="grace@example.com", is_verified=True),
                password=UserServicePassword(password="Correct-horse-9"),
            )).user_id
            admin.users.add_otp_email(UserServiceAddOTPEmailRequest(user_id=user_id))
            created = admin.sessions.create_session(SessionServiceCreateSessionRequest(
                checks=SessionServiceChecks(user=SessionServiceCheckUser(user_id=user_id)),
                challenges=SessionServiceRequestChallenges(otp_email=SessionServiceOTPEmail(
                    send_code=SessionServiceSendCode(
                        url_template="https://login.example/otp?code={{.Code}}&user={{.UserID}}"))),
            ))
            deadline = time.monotonic() + 10
            while not inbox.messages and time.monotonic() < deadline:
                time.sleep(0.05)
            check(len(inbox.messages) == 1, f"expected one email, got {len(inbox.messages)}")
            mail = inbox.messages[0]
            found = re.search(r"code=(\d{8})&user=" + re.escape(user_id), mail)
            check(found is not None, f"no code link in the email:\n{mail}")
            code = found.group(1)
            set_code = lambda: admin.sessions.set_session(SessionServiceSetSessionRequest(
                session_id=created.session_id,
                checks=SessionServiceChecks(otp_email=SessionServiceCheckOTP(code=code))))
            set_code()
            refused(set_code, 400, "failed_precondition", "SetSession with a used email code")
            factors = admin.sessions.get_session(
                SessionServiceGetSessionRequest(session_id=created.session_id)).session.factors
            check(factors.otp_email is not None and factors.otp_email.verified_at is not None,
                  f"factors.otpEmail not verified: {factors!r}")
            print(f"  ok zitadel-client v2 (Connect JSON): email code by SMTP on session {created.session_id}")
    finally:
        smtp.stop()


def main() -> int:
    with Sessiond() as server:
        zitadel = Zitadel.with_access_token(server.url, server.token)
        flow("v2", zitadel.sessions, server)
        flow("v2beta", zitadel.beta_sessions, server)
        factors_flow(server)
    email_code_flow()
    return 0


if __name__ == "__main__":
    sys.exit(main())
