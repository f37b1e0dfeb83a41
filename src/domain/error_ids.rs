//! Every error id sessiond answers with, in one table. An id is stable: clients branch on it,
//! so it never changes meaning. Ids that ZITADEL clients already know keep ZITADEL's spelling;
//! ids of sessiond's own start with `SESSIOND-`.
//!
//! No other module writes an id as a string literal (a test below scans the sources), so
//! adding an error means adding one line here.

macro_rules! error_ids {
    ($($(#[doc = $doc:literal])+ $name:ident = $id:literal;)+) => {
        $($(#[doc = $doc])+ pub const $name: &str = $id;)+

        /// Every id with its constant's name, for the checks below and for documentation.
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $id)),+];
    };
}

error_ids! {
    // --- authentication --------------------------------------------------------------------
    /// No `Authorization` header (or an empty one).
    AUTH_HEADER_MISSING = "AUTH-7fs1a";
    /// An `Authorization` header that does not use the Bearer scheme.
    AUTH_NOT_BEARER = "AUTH-7fs1b";
    /// A bearer JWT or session token that does not verify, is expired or revoked.
    AUTH_TOKEN_INVALID = "AUTH-7fs1e";
    /// The caller lacks a permission the call needs.
    PERMISSION_MISSING = "AUTH-AWfge";
    /// No session credentials on a self-service call.
    NO_SESSION = "SESSIOND-NO-SESSION";

    // --- sessions --------------------------------------------------------------------------
    /// The session does not exist or is terminated.
    SESSION_NOT_FOUND = "QUERY-SFeaa";
    /// The caller may not read this session.
    SESSION_READ_DENIED = "QUERY-dsfr3";
    /// A wrong, stale or foreign session token.
    SESSION_TOKEN_INVALID = "COMMAND-sGr42";
    /// The session has expired.
    SESSION_EXPIRED = "COMMAND-Hkl3d";
    /// A lifetime of zero or less, or beyond what a duration can hold.
    LIFETIME_INVALID = "COMMAND-asEG4";
    /// A check names a different user than the one the session already checked.
    USER_CHANGE = "COMMAND-userchange";
    /// A password check without a checked user.
    USER_CHECK_FIRST = "COMMAND-Sfw3f";
    /// A creator query with an empty id.
    CREATOR_QUERY_EMPTY = "GRPC-x8n24uh";
    /// A user agent query without a fingerprint.
    USER_AGENT_QUERY_EMPTY = "GRPC-x8n23uh";
    /// An ids query with more ids than one list may name.
    LIST_TOO_MANY_IDS = "SESSIOND-LIST-IDS";
    /// A check this server does not implement.
    CHECK_UNSUPPORTED = "SESSIOND-CHECK-UNSUPPORTED";
    /// A challenge this server does not implement.
    /// The self-service caller tried to revoke the session it is using.
    CURRENT_SESSION = "SESSIOND-CURRENT-SESSION";
    /// A freshly generated session id collided too often (never expected).
    ID_COLLISION = "SESSIOND-ID-COLLISION";

    // --- passwords and users ---------------------------------------------------------------
    /// The password does not match.
    PASSWORD_INVALID = "COMMAND-3M0fs";
    /// The user has no password to check.
    PASSWORD_NOT_SET = "COMMAND-3nJ4t";
    /// Too many failed checks: the user is locked out of password checks.
    PASSWORD_LOCKED = "COMMAND-SFA3t";
    /// Too many checks of one user are running at once; retry shortly.
    PASSWORD_BUSY = "SESSIOND-PASSWORD-BUSY";
    /// The password changed while it was being checked.
    PASSWORD_CHANGED = "SESSIOND-PASSWORD-CHANGED";
    /// A password of a length no check accepts.
    PASSWORD_LENGTH = "SESSIOND-PASSWORD-INVALID";
    /// A new password too weak to set.
    PASSWORD_WEAK = "SESSIOND-PASSWORD-WEAK";
    /// The user is locked.
    USER_LOCKED = "COMMAND-JLK35";
    /// The user is deactivated.
    USER_INACTIVE = "SESSION-Gj4ko";
    /// A deactivated user cannot be locked.
    USER_DEACTIVATED = "SESSIOND-USER-INACTIVE";
    /// The user does not exist.
    USER_NOT_FOUND = "COMMAND-ijzr3";
    /// The login name is taken.
    USER_EXISTS = "SESSIOND-USER-EXISTS";
    /// A user field that is too long or holds control characters.
    USER_FIELD_INVALID = "SESSIOND-USER-INVALID";
    /// A login name of a length no user can have.
    LOGIN_NAME_INVALID = "SESSIOND-LOGINNAME-INVALID";

    // --- second factors --------------------------------------------------------------------
    /// A factor kind name this server does not know.
    FACTOR_KIND_UNKNOWN = "SESSIOND-FACTOR-KIND";
    /// A TOTP code that is not six digits.
    TOTP_CODE_FORMAT = "SESSIOND-TOTP-FORMAT";
    /// A recovery code of a shape no code has.
    RECOVERY_CODE_FORMAT = "SESSIOND-RECOVERY-FORMAT";
    /// A TOTP check without a checked user.
    TOTP_NO_USER = "COMMAND-8N9ds";
    /// TOTP is not enrolled and verified for the user (also: nothing to verify).
    TOTP_NOT_READY = "COMMAND-3Mif9s";
    /// A wrong (or already used) TOTP code.
    TOTP_INVALID = "EVENT-8isk2";
    /// RegisterTOTP while a verified TOTP exists.
    TOTP_ALREADY_READY = "COMMAND-do9se";
    /// VerifyTOTPRegistration when the TOTP is already verified.
    TOTP_ALREADY_VERIFIED = "COMMAND-qx4ls";
    /// RemoveTOTP with nothing to remove.
    TOTP_NOT_FOUND = "COMMAND-Hd9sd";
    /// Too many failed checks: second factors are refused too.
    FACTOR_LOCKED = "COMMAND-SF3fg";
    /// A recovery-code check without a checked user.
    RECOVERY_NO_USER = "SESSIOND-RECOVERY-NO-USER";
    /// The user has no recovery codes.
    RECOVERY_NOT_SET = "SESSIOND-RECOVERY-NOT-SET";
    /// A wrong or already used recovery code.
    RECOVERY_INVALID = "SESSIOND-RECOVERY-INVALID";
    /// A recovery code count out of range.
    RECOVERY_COUNT_INVALID = "SESSIOND-RECOVERY-COUNT";
    /// The key that seals TOTP seeds is missing or does not open a stored seed.
    FACTOR_KEY = "SESSIOND-FACTOR-KEY";
    /// Too many checks of one user's second factors in progress at once.
    FACTOR_BUSY = "SESSIOND-FACTOR-BUSY";
    /// A one-time code that is empty, too long or holds control characters.
    OTP_CODE_FORMAT = "SESSIOND-OTP-FORMAT";
    /// AddOTPSMS without a verified phone.
    OTP_SMS_NO_PHONE = "COMMAND-Q54j2";
    /// AddOTPEmail without a verified email address.
    OTP_EMAIL_NO_EMAIL = "COMMAND-KLJ2d";
    /// AddOTPSMS when OTP SMS is already set up.
    OTP_SMS_ALREADY = "COMMAND-Ad3g2";
    /// AddOTPEmail when OTP email is already set up.
    OTP_EMAIL_ALREADY = "COMMAND-MKL2s";
    /// RemoveOTPSMS with nothing to remove.
    OTP_SMS_NOT_FOUND = "COMMAND-Sr3h3";
    /// RemoveOTPEmail with nothing to remove.
    OTP_EMAIL_NOT_FOUND = "COMMAND-b312D";
    /// An OTP SMS challenge without a checked user.
    OTP_SMS_CHALLENGE_NO_USER = "COMMAND-JKL3g";
    /// An OTP SMS challenge for a user without OTP SMS.
    OTP_SMS_CHALLENGE_NOT_SET = "COMMAND-BJ2g3";
    /// An OTP email challenge without a checked user.
    OTP_EMAIL_CHALLENGE_NO_USER = "COMMAND-JK3gp";
    /// An OTP email challenge for a user without OTP email.
    OTP_EMAIL_CHALLENGE_NOT_SET = "COMMAND-JKLJ3";
    /// An OTP email URL template that does not render.
    OTP_URL_TEMPLATE = "DOMAIN-oGh5e";
    /// An OTP check without a checked user.
    OTP_NO_USER = "COMMAND-S453v";
    /// An OTP check for a user without that factor.
    OTP_NOT_SET = "COMMAND-d2r52";
    /// An OTP check without a challenge of this session for this user.
    OTP_NO_CHALLENGE = "COMMAND-S34gh";
    /// An OTP code whose challenge has expired.
    OTP_EXPIRED = "CODE-QvUQ4P";
    /// A wrong (or already used) OTP code.
    OTP_INVALID = "CODE-woT0xc";
    /// Too many failed checks: one-time codes are refused too.
    OTP_LOCKED = "COMMAND-S6h4R";
    /// A code could not be delivered by email or SMS.
    OTP_DELIVERY = "SESSIOND-OTP-DELIVERY";
    /// A code is to be sent but no email or SMS delivery is configured.
    OTP_DELIVERY_UNCONFIGURED = "SESSIOND-OTP-NO-DELIVERY";
    /// A UserService method this server does not implement.
    METHOD_UNIMPLEMENTED = "SESSIOND-UNIMPLEMENTED";

    // --- passkeys (WebAuthn) ---------------------------------------------------------------
    /// A WebAuthn domain that is not this server's relying party id.
    PASSKEY_DOMAIN = "SESSIOND-PASSKEY-DOMAIN";
    /// A WebAuthn challenge without a user verification requirement.
    PASSKEY_UV_REQUIREMENT = "SESSIOND-PASSKEY-UV";
    /// A WebAuthn challenge without a checked user.
    PASSKEY_CHALLENGE_NO_USER = "COMMAND-eeR2e";
    /// A WebAuthn challenge for a user with no usable credential of the asked kind.
    PASSKEY_NONE = "WEBAU-4G8sw";
    /// A WebAuthn check without an earlier challenge (or with one already used or expired).
    PASSKEY_NO_CHALLENGE = "COMMAND-Ioqu5";
    /// Assertion or registration data that is not a WebAuthn credential.
    PASSKEY_FORMAT = "WEBAU-ADgv4";
    /// An assertion that does not verify.
    PASSKEY_INVALID = "WEBAU-3M9si";
    /// An assertion by a credential the user does not own.
    PASSKEY_FOREIGN = "COMMAND-Aej7i";
    /// An assertion whose signature counter did not move forward: a possibly cloned
    /// authenticator.
    PASSKEY_CLONED = "SESSIOND-PASSKEY-COUNTER";
    /// VerifyPasskeyRegistration with no pending registration of that id (or an expired one).
    PASSKEY_NOT_PENDING = "WEBAU-5M9so";
    /// A registration answer that does not verify.
    PASSKEY_REGISTRATION_INVALID = "WEBAU-3Vb9s";
    /// A credential already registered.
    PASSKEY_TAKEN = "SESSIOND-PASSKEY-TAKEN";
    /// RemovePasskey of a passkey the user does not have.
    PASSKEY_NOT_FOUND = "COMMAND-DAfb2";
    /// The server's own WebAuthn fault: a ceremony it could not begin, or state or a
    /// credential it stored that no longer reads back (never a client's bad credential).
    PASSKEY_SERVER = "SESSIOND-PASSKEY-SERVER";

    // --- request shapes --------------------------------------------------------------------
    /// A session id that cannot be one.
    SESSION_ID_INVALID = "SESSIOND-ID-INVALID";
    /// A user id that cannot be one.
    USER_ID_INVALID = "SESSIOND-USERID-INVALID";
    /// A request message that is malformed or breaks a field rule.
    REQUEST_INVALID = "SESSIOND-REQUEST-INVALID";
    /// A page size out of range.
    PAGE_SIZE_INVALID = "SESSIOND-PAGE-SIZE";
    /// A page token that is forged, garbled or from another list.
    PAGE_TOKEN_INVALID = "SESSIOND-PAGE-TOKEN";
    /// A transport-level refusal (path, method, body, content type) by the HTTP layer.
    HTTP_REJECTED = "SESSIOND-HTTP";
    /// The request was refused to protect the server (too many in flight).
    OVERLOADED = "SESSIOND-OVERLOAD";
    /// The request's deadline passed.
    DEADLINE = "SESSIOND-DEADLINE";
    /// A Connect protocol rule broken (method, content type, headers, message).
    CONNECT_REJECTED = "SESSIOND-CONNECT";
    /// An admin request that breaks a field rule.
    ADMIN_INVALID = "SESSIOND-ADMIN-INVALID";
    /// Self-service page parameters that are malformed.
    PAGE_INVALID = "SESSIOND-PAGE";
    /// An `active` filter that is not a boolean.
    ACTIVE_INVALID = "SESSIOND-ACTIVE";
    /// An `expand` value other than `identity` or `devices`.
    EXPAND_INVALID = "SESSIOND-EXPAND";
    /// A login flow id this server did not issue.
    LOGIN_FLOW_UNKNOWN = "SESSIOND-LOGIN-FLOW";
    /// A login flow past its expiry (Kratos' id for it).
    LOGIN_FLOW_EXPIRED = "self_service_flow_expired";
    /// A login body with a method other than `password`.
    LOGIN_METHOD_UNSUPPORTED = "SESSIOND-LOGIN-METHOD";

    // --- the session event feed ------------------------------------------------------------
    /// A feed cursor this server never issued.
    FEED_CURSOR_INVALID = "SESSIOND-FEED-CURSOR";
    /// A feed cursor older than the oldest retained event: list the sessions again and watch
    /// from now.
    FEED_CURSOR_EXPIRED = "SESSIOND-FEED-EXPIRED";
    /// Too many feed subscribers on this server.
    FEED_SUBSCRIBERS_FULL = "SESSIOND-FEED-FULL";
    /// The server is shutting down: the feed stream ends.
    FEED_SHUTDOWN = "SESSIOND-FEED-SHUTDOWN";
    /// A feed filter that breaks a rule (page size, event type).
    FEED_FILTER_INVALID = "SESSIOND-FEED-FILTER";
    /// A streaming RPC on a server that answers no streams (a stand-in such as the bench's).
    STREAM_UNSUPPORTED = "SESSIOND-STREAM-UNSUPPORTED";

    // --- signals (Shared Signals streams, back-channel logout) ------------------------------
    /// A stream, subject, client or poll request that breaks a rule (URL, id, field).
    SIGNALS_INVALID = "SESSIOND-SIGNALS-INVALID";
    /// No stream or logout client with that id (for this caller).
    SIGNALS_NOT_FOUND = "SESSIOND-SIGNALS-NOT-FOUND";
    /// A logout client with that id exists already.
    SIGNALS_EXISTS = "SESSIOND-SIGNALS-EXISTS";
    /// Signals are not available on this server (no signing key configured).
    SIGNALS_OFF = "SESSIOND-SIGNALS-OFF";
    /// A stored authorization header does not open with this server's key.
    SIGNALS_SEAL = "SESSIOND-SIGNALS-SEAL";
    /// Signing a token failed.
    SIGNALS_SIGN = "SESSIOND-SIGNALS-SIGN";
    /// A stream's verification request came sooner than its `min_verification_interval`.
    SIGNALS_TOO_SOON = "SESSIOND-SIGNALS-TOO-SOON";

    // --- the server's own faults -----------------------------------------------------------
    /// The store failed unexpectedly.
    STORE_FAILED = "SESSIOND-STORE";
    /// The store is unreachable or timed out.
    STORE_UNAVAILABLE = "SESSIOND-STORE-UNAVAILABLE";
    /// Too many concurrent changes to one record; retry.
    STORE_CONFLICT = "SESSIOND-STORE-CONFLICT";
    /// A unique value is already taken.
    DUPLICATE = "SESSIOND-DUPLICATE";
    /// An answer could not be encoded.
    ENCODE_FAILED = "SESSIOND-ENCODE";
    /// A message could not be carried over to its twin package version.
    TRANSCODE_FAILED = "SESSIOND-TRANSCODE";
    /// A login opened a session but issued no token (never expected).
    LOGIN_TOKEN_MISSING = "SESSIOND-LOGIN-TOKEN";
    /// The page-token key could not be used.
    HMAC_FAILED = "SESSIOND-HMAC";
    /// argon2 failed to hash.
    ARGON2_FAILED = "SESSIOND-ARGON2";
    /// argon2 parameters were refused.
    ARGON2_PARAMS = "SESSIOND-ARGON2-PARAMS";
    /// A password worker thread could not be started.
    ARGON2_THREAD = "SESSIOND-ARGON2-THREAD";
    /// The password workers are gone.
    ARGON2_GONE = "SESSIOND-ARGON2-GONE";
    /// A password worker dropped a job.
    ARGON2_LOST = "SESSIOND-ARGON2-LOST";
    /// A salt could not be made.
    ARGON2_SALT = "SESSIOND-ARGON2-SALT";
    /// An argon2 output could not be encoded.
    ARGON2_OUTPUT = "SESSIOND-ARGON2-OUTPUT";
    /// A stored password hash could not be read.
    ARGON2_STORED = "SESSIOND-ARGON2-STORED";
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::ALL;

    #[test]
    fn every_id_is_unique() {
        let mut seen = HashSet::new();
        for (name, id) in ALL {
            assert!(seen.insert(*id), "{name}: {id} is used twice");
        }
    }

    /// Whether `text` holds a quoted string that looks like an error id: an upper-case prefix,
    /// a dash, then letters, digits and dashes (`"COMMAND-sGr42"`, `"SESSIOND-HTTP"`).
    fn literal_ids(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (i, _) in text.match_indices('"') {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let candidate = &rest[..end];
            let Some((prefix, tail)) = candidate.split_once('-') else {
                continue;
            };
            let prefix_ok = prefix.len() >= 3 && prefix.bytes().all(|b| b.is_ascii_uppercase());
            let tail_ok =
                !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if prefix_ok && tail_ok && ALL.iter().any(|(_, id)| *id == candidate) {
                found.push(candidate.to_owned());
            }
        }
        found
    }

    fn visit(dir: &Path, offenders: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                visit(&path, offenders);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("domain/error_ids.rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                for id in literal_ids(&text) {
                    offenders.push(format!("{}: {id}", path.display()));
                }
            }
        }
    }

    #[test]
    fn no_module_writes_an_id_as_a_literal() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        visit(&src, &mut offenders);
        assert!(
            offenders.is_empty(),
            "error ids belong in domain/error_ids.rs: {offenders:#?}"
        );
    }
}
