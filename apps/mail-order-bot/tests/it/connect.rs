//! `check-config --connect`: after the offline checks, each configured server is tried
//! for real (queue, mailbox, order database), one row per probe; exit 2 when one fails,
//! and no password in anything printed.

use std::path::Path;
use std::process::{Command, Output};

use runtime_testkit::dovecot::DovecotServer;

const BIN: &str = env!("CARGO_BIN_EXE_mail-order-bot");

fn bot(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

fn catalog() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/catalog.csv")
        .display()
        .to_string()
}

/// The row of `component` in the probe table.
fn row<'a>(stdout: &'a str, component: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(component))
        .unwrap_or_else(|| panic!("no {component} row in:\n{stdout}"))
}

#[tokio::test]
async fn live_redis_postgres_and_imap_pass_and_dead_ports_fail_with_exit_2() {
    let imap = DovecotServer::start()
        .await
        .expect("dovecot (Debian package dovecot-imapd)");
    let dir = tempfile::tempdir().unwrap();
    let config = |redis: u16, pg: u16, imap_port: u16, password: &str| {
        format!(
            "[queue]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{redis}/0\"\n\n\
             [mail]\nsource = \"imap-poll\"\nhost = \"127.0.0.1\"\nport = {imap_port}\n\
             tls = \"none\"\nusername = \"{user}\"\npassword = \"{password}\"\n\n\
             [orders]\ndatabase_url = \"postgres://postgres:pg-sekrit@127.0.0.1:{pg}/test\"\n\
             catalog_file = {catalog:?}\n",
            user = imap.user(),
            catalog = catalog(),
        )
    };
    std::fs::write(
        dir.path().join("live.toml"),
        config(6379, 5432, imap.port(), imap.password()),
    )
    .unwrap();
    let out = bot(
        dir.path(),
        &["check-config", "-c", "live.toml", "--connect"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("configuration ok"), "{stdout}");
    for component in ["queue", "mail", "orders"] {
        assert!(row(&stdout, component).contains(" ok ("), "{stdout}");
    }
    assert!(!stdout.contains("pg-sekrit"), "{stdout}");

    // A loopback port nobody listens on; a wrong IMAP password.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("dead.toml"),
        config(dead, dead, imap.port(), "imap-wrong-sekrit"),
    )
    .unwrap();
    let out = bot(
        dir.path(),
        &[
            "check-config",
            "-c",
            "dead.toml",
            "--connect",
            "--connect-timeout",
            "3s",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    for component in ["queue", "mail", "orders"] {
        assert!(row(&stdout, component).contains("FAILED"), "{stdout}");
    }
    assert!(
        stderr.contains("3 of 3 connection checks failed"),
        "{stderr}"
    );
    for secret in ["pg-sekrit", "imap-wrong-sekrit"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}\n{stderr}"
        );
    }

    // Without --connect nothing is tried: the same file passes offline.
    let out = bot(dir.path(), &["check-config", "-c", "dead.toml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("FAILED"));
}
