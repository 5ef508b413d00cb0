//! `check-config` and `run` share one validation path (runtime-compose's plan): every
//! config `check-config` rejects, `run` rejects the same way, before anything starts —
//! exit 2 naming the key. Driven through the real binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mail-order-bot");

/// A config the bot could run on (Maildir source, SQLite store in `dir`), plus `extra`.
fn config_file(dir: &Path, extra: &str) -> std::path::PathBuf {
    let maildir = dir.join("maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/catalog.csv");
    let path = dir.join("bot.toml");
    std::fs::write(
        &path,
        format!(
            "[mail]\nsource = \"maildir\"\nmaildir = {:?}\n\
             [orders]\ndatabase_url = \"sqlite://{}\"\ncatalog_file = {:?}\n{extra}\n",
            maildir.display().to_string(),
            dir.join("orders.db").display(),
            catalog.display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// Runs the bot with `args`; a process still running after `limit` is killed (a config
/// that should have been refused started), which the callers see as no exit code.
fn bot(dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            rx.recv().unwrap().unwrap()
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Both commands exit 2 on `extra` and name `key`; no secret in `hidden` is printed.
fn assert_both_refuse(extra: &str, key: &str, hidden: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    config_file(dir.path(), extra);
    for command in ["check-config", "run"] {
        let out = bot(
            dir.path(),
            &[command, "--config", "bot.toml"],
            Duration::from_secs(20),
        );
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "`{command}` on {extra:?}: stderr: {err}"
        );
        assert!(
            err.contains(key),
            "`{command}` on {extra:?} does not name {key}: {err}"
        );
        if let Some(secret) = hidden {
            assert!(!err.contains(secret), "`{command}` printed a secret: {err}");
        }
    }
}

/// `check-config` accepts `extra` (exit 0) and `run` really starts on it: "runtime
/// running" is logged, and SIGTERM then stops it with exit 0. The control plane binds a
/// free loopback port unless `extra` configures `[control]`.
fn assert_both_start(extra: &str) {
    use std::io::{BufRead, BufReader};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let control = if extra.contains("[control]") {
        ""
    } else {
        "[control]\nbind = \"127.0.0.1:0\"\n"
    };
    config_file(dir.path(), &format!("{control}{extra}"));
    let out = bot(
        dir.path(),
        &["check-config", "--config", "bot.toml"],
        Duration::from_secs(20),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "check-config on {extra:?}: {}",
        text(&out.stderr)
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", "bot.toml"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut running = false;
    while !running && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                running = line.contains("runtime running");
                seen.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // The process ended (and closed stderr) without starting.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(running, "`run` on {extra:?} did not start: {seen:#?}");
    assert_eq!(status.code(), Some(0), "`run` on {extra:?}: {seen:#?}");
}

/// The accepted side of the table: each config passes `check-config` and `run` starts on
/// it for real (a Redis queue on the local server, exporters, control-plane settings).
#[test]
fn check_config_and_run_both_start_on_good_configs() {
    let queue = format!("verdict-start-{}", std::process::id());
    let redis = format!(
        "[queue]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nname = \"{queue}\"\n"
    );
    let table: Vec<String> = vec![
        String::new(),
        redis,
        "[queue]\ncapacity = 5\nmax_attempts = 1\nvisibility_timeout = \"2s\"\n".into(),
        "[workers]\nconcurrency = 2\ntask_timeout = \"5s\"\nlease_renewal = \"1s\"\n".into(),
        "[tracing]\nexporter = \"stdout\"\n".into(),
        // A collector that is down does not stop a start: spans are dropped and counted.
        "[tracing]\nexporter = \"otlp\"\notlp_endpoint = \"http://127.0.0.1:1\"\n".into(),
        "[control]\nenabled = false\n".into(),
        "[control]\nbind = \"127.0.0.1:0\"\ntoken = \"s3cret-token\"\nmax_connections = 8\n".into(),
        "[runtime]\nshutdown_timeout = \"3s\"\nrelease_timeout = \"2s\"\n".into(),
        "[queue]\nbackend = \"memory\"\nname = \"other-queue\"\n[tracing]\nlevel = \"debug\"\n"
            .into(),
    ];
    for extra in &table {
        assert_both_start(extra);
    }
    crate::harness::delete_redis_queue(&queue);
}

#[test]
fn a_redis_unix_socket_url_is_refused_by_check_config_and_run_alike() {
    assert_both_refuse(
        "[queue]\nbackend = \"redis\"\nredis_url = \"redis+unix:///tmp/r.sock\"\n",
        "queue.redis_url",
        None,
    );
}

#[test]
fn check_config_and_run_give_the_same_verdict_on_bad_configs() {
    let table: &[(&str, &str, Option<&str>)] = &[
        // Refused by the Redis queue itself (passed check-config before composition did).
        (
            "[queue]\nbackend = \"redis\"\nredis_url = \"redis://u:hunter2@host:notaport/0\"\n",
            "queue.redis_url",
            Some("hunter2"),
        ),
        (
            "[queue]\nbackend = \"redis\"\nname = \"a{b}\"\n",
            "queue.name",
            None,
        ),
        // Refused by the OTel exporter.
        (
            "[tracing]\nexporter = \"otlp\"\notlp_endpoint = \"https://collector:4318\"\n",
            "tracing.otlp_endpoint",
            None,
        ),
        (
            "[tracing]\nexporter = \"otlp\"\notlp_endpoint = \"http://\"\n",
            "tracing.otlp_endpoint",
            None,
        ),
        (
            "[tracing]\nexporter = \"otlp\"\notlp_endpoint = \"http://a b:4318\"\n",
            "tracing.otlp_endpoint",
            None,
        ),
        // Refused by the control plane's safety rule, before binding.
        ("[control]\nbind = \"0.0.0.0:0\"\n", "control.bind", None),
        ("[control]\nbind = \"[::]:0\"\n", "control.bind", None),
        (
            "[control]\nbind = \"192.0.2.1:8080\"\n",
            "control.bind",
            None,
        ),
        // Pool limits (core's checks of `[workers]`).
        ("[workers]\nrate = \"50/x\"\n", "workers.rate", None),
        ("[workers]\nrate = \"0/s\"\n", "workers.rate", None),
        (
            "[workers]\nconcurrency_key = \"customer\"\nper_key = 0\n",
            "workers.per_key",
            None,
        ),
        ("[workers]\nper_key = 2\n", "workers.per_key", None),
        (
            "[workers]\nrate = \"5/s\"\nrate_per_key = true\n",
            "workers.rate_per_key",
            None,
        ),
        // Refused by core's checks of the platform sections.
        (
            "[queue]\nbackend = \"redis\"\nredis_url = \"http://u:hunter2@host/0\"\n",
            "queue.redis_url",
            Some("hunter2"),
        ),
        (
            "[tracing]\nexporter = \"otlp\"\notlp_endpoint = \"ftp://collector\"\n",
            "tracing.otlp_endpoint",
            None,
        ),
        ("[queue]\ncapacity = 0\n", "queue.capacity", None),
        ("[workers]\nconcurrency = 0\n", "workers.concurrency", None),
        (
            "[control]\nbind = \"0.0.0.0:0\"\ntoken = \"  \"\n",
            "control.token",
            None,
        ),
        ("[queue]\nbackend = \"nats\"\n", "queue.backend", None),
        // Typos, bad tags and out-of-range values in every section.
        ("[queue]\ncapacty = 5\n", "queue.capacty", None),
        (
            "[tracing]\nexporter = \"jaeger\"\n",
            "tracing.exporter",
            None,
        ),
        ("[tracing]\nlevel = \"loud\"\n", "tracing.level", None),
        (
            "[control]\nmax_connections = 0\n",
            "control.max_connections",
            None,
        ),
        (
            "[control]\nidle_timeout = \"0s\"\n",
            "control.idle_timeout",
            None,
        ),
        (
            "[control]\nheader_read_timeout = \"0s\"\n",
            "control.header_read_timeout",
            None,
        ),
        ("[control]\nbnd = \"127.0.0.1:0\"\n", "control.bnd", None),
        (
            "[queue]\nvisibility_timeout = \"18446744073709551615s\"\n",
            "queue.visibility_timeout",
            None,
        ),
        ("[queue]\nmax_attempts = 0\n", "queue.max_attempts", None),
        (
            "[runtime]\nsource_stop_timeout = \"0s\"\n",
            "runtime.source_stop_timeout",
            None,
        ),
        (
            "[runtime]\nshutdown_timeout = \"400days\"\n",
            "runtime.shutdown_timeout",
            None,
        ),
        (
            "[workers]\nlease_renewal = \"120s\"\n[queue]\nvisibility_timeout = \"60s\"\n",
            "workers.lease_renewal",
            None,
        ),
        (
            "[workers]\ntask_timeout = \"soon\"\n",
            "workers.task_timeout",
            None,
        ),
        (
            "[runtime]\nrelease_timeout = \"0s\"\n",
            "runtime.release_timeout",
            None,
        ),
        (
            "[runtime]\ncontrol_stop_timeout = \"0s\"\n",
            "runtime.control_stop_timeout",
            None,
        ),
        ("[sinks]\nx = 1\n", "sinks", None),
        // Schedules: a bad cron, an unknown zone, both or neither of cron and every.
        (
            "[[schedules]]\nname = \"d\"\ncron = \"0 7 * *\"\nroute = \"daily-summary\"\n",
            "schedules[0].cron",
            None,
        ),
        (
            "[[schedules]]\nname = \"d\"\ncron = \"0 7 * * *\"\ntimezone = \"Europe/Nowhere\"\nroute = \"r\"\n",
            "schedules[0].timezone",
            None,
        ),
        (
            "[[schedules]]\nname = \"d\"\ncron = \"0 7 * * *\"\nevery = \"1h\"\nroute = \"r\"\n",
            "schedules[0].every",
            None,
        ),
        (
            "[[schedules]]\nname = \"d\"\nroute = \"r\"\n",
            "schedules[0].cron",
            None,
        ),
    ];
    for (extra, key, hidden) in table {
        assert_both_refuse(extra, key, *hidden);
    }
}
