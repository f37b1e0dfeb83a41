//! The core's error: a kind (what went wrong, which every face maps to its own status) plus a
//! stable machine-readable id and a client-safe message. Internal causes are kept as a source
//! for the log and never shown to clients.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, independent of any wire protocol. The faces map each kind to a gRPC code,
/// an HTTP status and their own error body in one table (`faces::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    /// The operation does not exist on this route (e.g. a wrong HTTP method).
    Unimplemented,
    Internal,
}

/// A failed operation. `id` is stable (clients may branch on it), `message` is safe to show.
pub struct Error {
    kind: ErrorKind,
    id: &'static str,
    message: Cow<'static, str>,
    failed_attempts: Option<u32>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ErrorKind, id: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            id,
            message: message.into(),
            failed_attempts: None,
            source: None,
        }
    }

    pub fn invalid_argument(id: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidArgument, id, message)
    }

    pub fn not_found(id: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::NotFound, id, message)
    }

    pub fn permission_denied(id: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::PermissionDenied, id, message)
    }

    pub fn unauthenticated(id: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unauthenticated, id, message)
    }

    pub fn failed_precondition(id: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, id, message)
    }

    /// An unexpected failure: clients see only "internal error"; the cause goes to the log.
    pub fn internal(
        id: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind: ErrorKind::Internal,
            id,
            message: Cow::Borrowed("internal error"),
            failed_attempts: None,
            source: Some(source.into()),
        }
    }

    /// The store could not be reached or timed out: retryable by the client.
    pub fn unavailable(
        id: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            id,
            message: Cow::Borrowed("the service is temporarily unavailable, retry later"),
            failed_attempts: None,
            source: Some(source.into()),
        }
    }

    pub fn with_failed_attempts(mut self, attempts: u32) -> Self {
        self.failed_attempts = Some(attempts);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn id(&self) -> &'static str {
        self.id
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Number of failed password attempts so far, for credential-check failures.
    pub fn failed_attempts(&self) -> Option<u32> {
        self.failed_attempts
    }

    /// Message in the form ZITADEL clients show: `<message> (<id>)`.
    pub fn display_message(&self) -> String {
        format!("{} ({})", self.message, self.id)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.kind, self.id, self.message)?;
        let mut source = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.id)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
