//! Domain types and rules: sessions, users, principals, tokens and the one error type the
//! core returns. Nothing here knows about tonic, axum, sqlx or jsonwebtoken; values are parsed
//! once at the boundary (`SessionId::parse`, `LoginName::parse`) and trusted afterwards.

mod error;
pub mod error_ids;
mod factor;
mod feed;
mod ids;
mod principal;
mod session;
mod time;
mod token;
mod user;

pub use error::{Error, ErrorKind};
pub use factor::{EnrolledFactor, FactorKind, FactorState, OtpCode, RecoveryCode, TotpCode};
pub use feed::{
    DEFAULT_EVENT_PAGE, EventFilter, EventPage, FeedPosition, MAX_EVENT_PAGE, SessionEvent,
    SessionEventType, TerminationReason,
};
pub use ids::{SessionId, UserId, new_numeric_id, new_ordered_id, ordered_id_from};
pub use principal::{Permission, Permissions, Principal, PrincipalKind};
pub use session::{
    ActivityFilter, Details, Factors, ListDetails, Metadata, PageCursor, Session, SessionFilter,
    SessionQuery, SortOrder, TimeComparison, UserAgent, UserFactor, UserSessionsQuery,
    WebAuthNFactor,
};
pub use time::{Clock, ManualClock, SystemClock, Time};
pub use token::{SessionToken, TokenHash};
pub use user::{LoginName, Password, User, UserState, locked_out};
