//! How each type of setting is read and printed: from a flag or `SESSIOND_…` variable (clap
//! parses it), from the settings file (serde reads it, then an error names the key), and by
//! `config show`. A new setting of an existing type needs nothing here; a new type needs one
//! `impl Value`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Arg, ArgAction, ArgMatches, value_parser};
use serde::de::DeserializeOwned;

use crate::store::Synchronous;

/// A type a setting can have.
pub trait Value: Sized + Clone + fmt::Debug + Send + Sync + 'static {
    /// What the settings file holds (a duration is a string there, for example).
    type File: DeserializeOwned;

    /// How clap parses the flag's (or the environment variable's) text.
    fn flag(arg: Arg) -> Arg;

    /// The value given by a flag or an environment variable, if any.
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self>;

    /// The value from the file's form; `key` names the setting in the error.
    fn from_file(key: &str, raw: Self::File) -> anyhow::Result<Self>;

    /// As `config show` prints it.
    fn show(&self) -> String;

    /// As `--help` prints it as the default; `None`: no default shown.
    fn help(&self) -> Option<String> {
        Some(self.show().trim_matches('"').to_owned())
    }

    /// What `config show` prints for an optional setting left unset.
    fn unset() -> &'static str {
        "(unset)"
    }
}

/// The one value clap parsed for `id`, when the flag or its variable was given.
fn one<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Option<T> {
    matches.try_get_one::<T>(id).ok().flatten().cloned()
}

impl Value for SocketAddr {
    type File = String;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(SocketAddr))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(key: &str, raw: String) -> anyhow::Result<Self> {
        raw.parse().with_context(|| {
            format!("configuration file: {key}: {raw:?} is not an address like 127.0.0.1:8080")
        })
    }
    fn show(&self) -> String {
        format!("{:?}", self.to_string())
    }
}

impl Value for bool {
    type File = bool;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(bool))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(_: &str, raw: bool) -> anyhow::Result<Self> {
        Ok(raw)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Duration {
    type File = String;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(humantime::parse_duration)
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(key: &str, raw: String) -> anyhow::Result<Self> {
        humantime::parse_duration(&raw).with_context(|| {
            format!("configuration file: {key}: {raw:?} is not a duration like 15s or 1h")
        })
    }
    fn show(&self) -> String {
        format!("{:?}", humantime::format_duration(*self).to_string())
    }
    fn unset() -> &'static str {
        "(off)"
    }
}

impl Value for PathBuf {
    type File = PathBuf;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(PathBuf))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(_: &str, raw: PathBuf) -> anyhow::Result<Self> {
        Ok(raw)
    }
    fn show(&self) -> String {
        format!("{:?}", self.display().to_string())
    }
}

impl Value for String {
    type File = String;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(String))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(_: &str, raw: String) -> anyhow::Result<Self> {
        Ok(raw)
    }
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

/// Whole numbers: clap and serde parse them; `config show` prints them bare.
macro_rules! number {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            type File = $ty;
            fn flag(arg: Arg) -> Arg {
                arg.value_parser(value_parser!($ty))
            }
            fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
                one(matches, id)
            }
            fn from_file(_: &str, raw: $ty) -> anyhow::Result<Self> {
                Ok(raw)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

number!(u32, u64, usize);

impl Value for Synchronous {
    type File = String;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(|text: &str| text.parse::<Synchronous>())
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(key: &str, raw: String) -> anyhow::Result<Self> {
        raw.parse().map_err(|e| anyhow::anyhow!("{key}: {e}"))
    }
    fn show(&self) -> String {
        format!("{:?}", self.to_string())
    }
}

/// A fraction from 0 to 1 (a sampling ratio): `0.25` on the command line and in the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratio(pub f64);

impl std::str::FromStr for Ratio {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(Ratio(r)),
            _ => Err(format!("{text:?} is not a fraction from 0 to 1 like 0.25")),
        }
    }
}

impl Value for Ratio {
    type File = f64;
    fn flag(arg: Arg) -> Arg {
        arg.value_parser(|text: &str| text.parse::<Ratio>())
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(key: &str, raw: f64) -> anyhow::Result<Self> {
        raw.to_string()
            .parse()
            .map_err(|e| anyhow::anyhow!("configuration file: {key}: {e}"))
    }
    fn show(&self) -> String {
        self.0.to_string()
    }
}

/// A comma-separated list on the command line, a TOML array in the file.
impl Value for Vec<String> {
    type File = Vec<String>;
    fn flag(arg: Arg) -> Arg {
        arg.action(ArgAction::Append)
            .value_delimiter(',')
            .value_parser(value_parser!(String))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        let values = matches.try_get_many::<String>(id).ok().flatten()?;
        Some(values.cloned().collect())
    }
    fn from_file(_: &str, raw: Vec<String>) -> anyhow::Result<Self> {
        Ok(raw)
    }
    fn show(&self) -> String {
        format!("{self:?}")
    }
    fn help(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.join(","))
    }
}

/// Unset unless given; `config show` prints the type's word for unset.
impl<T: Value> Value for Option<T> {
    type File = T::File;
    fn flag(arg: Arg) -> Arg {
        T::flag(arg)
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        T::from_flags(matches, id).map(Some)
    }
    fn from_file(key: &str, raw: T::File) -> anyhow::Result<Self> {
        T::from_file(key, raw).map(Some)
    }
    fn show(&self) -> String {
        self.as_ref()
            .map_or_else(|| T::unset().to_owned(), Value::show)
    }
    fn help(&self) -> Option<String> {
        self.as_ref().and_then(Value::help)
    }
}

/// A database URL. It may carry a password: `Debug`, `Display` and `config show` print it
/// with the password replaced by `***`; [`DatabaseUrl::expose`] gives the real one.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL with its password, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl Value for DatabaseUrl {
    type File = String;
    fn flag(arg: Arg) -> Arg {
        arg.hide_env_values(true)
            .value_parser(|text: &str| Ok::<_, std::convert::Infallible>(Self::from(text)))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(_: &str, raw: String) -> anyhow::Result<Self> {
        Ok(Self(raw))
    }
    fn show(&self) -> String {
        format!("{self:?}")
    }
    fn unset() -> &'static str {
        "(embedded SQLite)"
    }
}

/// A secret setting (a password, a signing secret): `Debug` and `config show` print `***`;
/// [`SecretText::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Value for SecretText {
    type File = String;
    fn flag(arg: Arg) -> Arg {
        arg.hide_env_values(true)
            .value_parser(|text: &str| Ok::<_, std::convert::Infallible>(Self::from(text)))
    }
    fn from_flags(matches: &ArgMatches, id: &str) -> Option<Self> {
        one(matches, id)
    }
    fn from_file(_: &str, raw: String) -> anyhow::Result<Self> {
        Ok(Self(raw))
    }
    fn show(&self) -> String {
        "\"***\"".to_owned()
    }
    fn help(&self) -> Option<String> {
        None
    }
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("sqlite://./data/sessiond.db"),
            "sqlite://./data/sessiond.db"
        );
        let url = DatabaseUrl::from("postgres://a:pw@h/db");
        assert!(!format!("{url:?}").contains("pw@"));
        assert!(!url.to_string().contains("pw@"));
        assert!(!Some(url.clone()).show().contains("pw@"));
        assert_eq!(url.expose(), "postgres://a:pw@h/db");
    }
}
