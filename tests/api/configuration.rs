//! Configuration: a TOML file, `SESSIOND_…` variables and flags, in that order of strength;
//! `config show` redacts secrets; invalid settings fail naming the setting.

use std::process::Command;

fn show(file: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("sessiond.toml");
    std::fs::write(&path, file).expect("write");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command
        .arg("--config")
        .arg(&path)
        .args(["config", "show"])
        .args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_beat_environment_which_beats_the_file_which_beats_defaults() {
    let file = "listen = \"127.0.0.1:7001\"\ninstance-id = \"from-file\"\nrequest-timeout = \"20s\"\nbody-limit = 4096\n";
    let (ok, out, err) = show(
        file,
        &[("SESSIOND_INSTANCE_ID", "from-env")],
        &["--request-timeout", "3s"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:7001\""), "{out}");
    assert!(out.contains("instance-id = \"from-env\""), "{out}");
    assert!(out.contains("request-timeout = \"3s\""), "{out}");
    assert!(out.contains("body-limit = 4096"), "{out}");
    assert!(
        out.contains("max-concurrent-requests = 1024"),
        "defaults stay: {out}"
    );
}

#[test]
fn config_show_redacts_the_database_password() {
    let (ok, out, err) = show(
        "database-url = \"postgres://app:hunter2@db:5432/s\"\n",
        &[],
        &[],
    );
    assert!(ok, "{err}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("postgres://app:***@db:5432/s"), "{out}");
}

#[test]
fn invalid_settings_fail_naming_the_setting() {
    for (file, setting) in [
        ("lissten = \"x\"\n", "lissten"),
        ("request-timeout = \"soon\"\n", "request-timeout"),
        ("listen = \"nowhere\"\n", "listen"),
        ("body-limit = \"big\"\n", "body-limit"),
        ("max-concurrent-requests = 0\n", "max-concurrent-requests"),
        ("session-cookie = \"a b\"\n", "session-cookie"),
    ] {
        let (ok, _, err) = show(file, &[], &[]);
        assert!(!ok, "{file} was accepted");
        assert!(err.contains(setting), "{file}: {err}");
    }
}
