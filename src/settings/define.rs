//! The `settings!` macro. From one list of entries
//!
//! ```text
//! /// Help text (one or more doc lines).
//! name: Type = default_expression [, in GROUPS] [, env "SESSIOND_OTHER_NAME"];
//! ```
//!
//! it generates the `Settings` struct with its `Default` and `Debug` (secrets are redacted by
//! their type's `Debug`), the file layer (every key optional, unknown keys refused), the
//! clap arguments of each group and `config show`. How a value is parsed and printed belongs
//! to its type (`value.rs`), not to the entry.

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident : $ty:ty = $default:expr
        $(, in $groups:expr)?
        $(, env $env:literal)?
        ;
    )*) => {
        /// Every setting of the server and of the operator commands: built-in defaults, then
        /// the settings file, then `SESSIOND_…` variables, then flags.
        #[derive(Clone)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        impl std::fmt::Debug for Settings {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Settings")
                    $( .field(stringify!($name), &self.$name) )*
                    .finish()
            }
        }

        /// The settings file: every key optional, an unknown key refused.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        struct FileLayer {
            $( $name: Option<<$ty as Value>::File>, )*
        }

        impl Settings {
            /// Overrides every setting the file names.
            fn apply_file(&mut self, file: FileLayer) -> anyhow::Result<()> {
                $(
                    if let Some(raw) = file.$name {
                        self.$name = <$ty as Value>::from_file(&key(stringify!($name)), raw)?;
                    }
                )*
                Ok(())
            }

            /// Overrides every setting given by a flag or a `SESSIOND_…` variable.
            fn apply_flags(&mut self, matches: &clap::ArgMatches) {
                $(
                    if let Some(value) = <$ty as Value>::from_flags(matches, stringify!($name)) {
                        self.$name = value;
                    }
                )*
            }

            /// The settings as `key = value` lines (TOML for most values), in list order,
            /// secrets redacted: what `sessiond config show` prints.
            pub fn show(&self) -> String {
                let mut out = String::new();
                $(
                    out.push_str(&key(stringify!($name)));
                    out.push_str(" = ");
                    out.push_str(&Value::show(&self.$name));
                    out.push('\n');
                )*
                out
            }

            /// The clap arguments of the settings in `groups` (every setting is in `SERVE`).
            fn args(groups: u8) -> Vec<clap::Arg> {
                let defaults = Self::default();
                let mut args = Vec::new();
                $(
                    if (SERVE $(| $groups)?) & groups != 0 {
                        let env: Option<&str> = None $( .or(Some($env)) )?;
                        let doc: &[&str] = &[$($doc),*];
                        args.push(arg(stringify!($name), env, doc, &defaults.$name));
                    }
                )*
                args
            }
        }
    };
}
