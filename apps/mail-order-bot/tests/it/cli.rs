//! The real binary's command line: exit codes and what operators read.

use std::path::Path;
use std::process::{Command, Output};

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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn catalog() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/catalog.csv")
        .display()
        .to_string()
}

#[test]
fn check_config_names_the_key_and_file_line_of_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!(
            "[orders]\ncatalog_file = {:?}\n\n[workers]\nconcurrency = \"many\"\n\n[mail]\npoll_interval = \"soon\"\n",
            catalog()
        ),
    )
    .unwrap();
    let out = bot(dir.path(), &["check-config", "--config", "bad.toml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("workers.concurrency"), "{err}");
    assert!(err.contains("bad.toml:5"), "{err}");
    assert!(err.contains("mail.poll_interval"), "{err}");
    assert!(err.contains("bad.toml:8"), "{err}");

    // `run` refuses the same file with the same exit code, before starting anything.
    let out = bot(dir.path(), &["run", "--config", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("workers.concurrency"));

    // A good file passes.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("[orders]\ncatalog_file = {:?}\n", catalog())).unwrap();
    let out = bot(dir.path(), &["check-config", "--config", "good.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration ok"));
}

#[test]
fn check_config_reports_environment_overrides_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        format!(
            "[orders]\ncatalog_file = {:?}\n[mail]\nsource = \"imap-poll\"\nusername = \"u\"\npasword = \"x\"\n",
            catalog()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["check-config", "--config", "bot.toml"])
        .current_dir(dir.path())
        .env("MOB_QUEUE__MAX_ATTEMPTS", "zero");
    let out = cmd.output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("queue.max_attempts"), "{err}");
    assert!(err.contains("MOB_QUEUE__MAX_ATTEMPTS"), "{err}");
    assert!(err.contains("mail.pasword"), "{err}");
    assert!(err.contains("did you mean `password`"), "{err}");
}

#[test]
fn print_config_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        format!(
            "[orders]\ncatalog_file = {:?}\ndatabase_url = \"postgres://app:dbpw@127.0.0.1/x\"\n\
             [mail]\nsource = \"imap-idle\"\nusername = \"orders\"\npassword = \"hunter2\"\n\
             [control]\ntoken = \"t0k3n\"\n",
            catalog()
        ),
    )
    .unwrap();
    let out = bot(dir.path(), &["print-config", "--config", "bot.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("password = \"***\""), "{stdout}");
    assert!(stdout.contains("token = \"***\""), "{stdout}");
    assert!(stdout.contains("source = \"imap-idle\""), "{stdout}");
    assert!(stdout.contains("name = \"mail-orders\""), "{stdout}");
    for secret in ["hunter2", "t0k3n", "dbpw"] {
        assert!(!stdout.contains(secret), "{secret} leaked: {stdout}");
    }
}

#[test]
fn print_config_hides_secrets_in_url_queries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        format!(
            "[orders]\ncatalog_file = {:?}\ndatabase_url = \"postgres://app@127.0.0.1/x?password=qpw1\"\n\
             [queue]\nredis_url = \"redis://127.0.0.1:6379/0?password=qpw2\"\n\
             [mail]\nsource = \"imap-idle\"\nusername = \"orders\"\npassword = \"x\"\n",
            catalog()
        ),
    )
    .unwrap();
    let out = bot(dir.path(), &["print-config", "--config", "bot.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("?password=***"), "{stdout}");
    for secret in ["qpw1", "qpw2"] {
        assert!(!stdout.contains(secret), "{secret} leaked: {stdout}");
    }
}

#[test]
fn orders_on_an_empty_machine_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = bot(dir.path(), &["orders"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no orders yet"));
    assert!(
        !dir.path().join("var").exists(),
        "listing must not create a database"
    );
    let out = bot(dir.path(), &["orders", "--json"]);
    assert_eq!(text(&out.stdout).trim(), "[]");

    let out = bot(dir.path(), &["--help"]);
    let help = text(&out.stdout);
    for cmd in ["run", "check-config", "print-config", "orders", "demo"] {
        assert!(help.contains(cmd), "{help}");
    }
}

/// Runs `demo` in `dir` until it says it is watching; returns its stdout so far and the
/// child (still running).
fn demo_until_watching(dir: &Path) -> (String, std::process::Child) {
    use std::io::BufRead;
    let mut cmd = Command::new(BIN);
    cmd.arg("demo")
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line.starts_with("watching ") {
                    return (out, child);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("demo did not reach its watching phase; output so far:\n{out}");
            }
        }
    }
}

fn interrupt(mut child: std::process::Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "demo exits 0 on Ctrl-C");
}

/// `demo` on a fresh directory: seven sample orders (four accepted, three rejected with
/// the documented reasons), the control plane URL, then watching; Ctrl-C exits 0. A
/// second run seeds nothing again and shows the same seven orders.
#[test]
fn demo_processes_the_samples_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (out, child) = demo_until_watching(dir.path());
    interrupt(child);
    assert!(out.contains("seeded 7 sample email(s)"), "{out}");
    assert!(out.contains("processed 7/7"), "{out}");
    assert!(out.contains("control plane: http://127.0.0.1:"), "{out}");
    assert_eq!(out.matches(" accepted ").count(), 4, "{out}");
    for reason in [
        "unknown_sku:SPROCKET-9",
        "invalid_quantity:GADGET-7",
        "no_order_lines",
    ] {
        assert!(out.contains(reason), "{reason} missing:\n{out}");
    }
    let filed = std::fs::read_dir(dir.path().join("var/maildir/cur"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(":2,S")
        })
        .count();
    assert_eq!(filed, 7, "every sample filed as seen");

    let (again, child) = demo_until_watching(dir.path());
    interrupt(child);
    assert!(again.contains("seeded 0 sample email(s)"), "{again}");
    assert_eq!(again.matches(" accepted ").count(), 4, "{again}");

    let out = bot(dir.path(), &["orders", "--json"]);
    let orders: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(orders.as_array().map(Vec::len), Some(7));
}

/// The shipped example configuration stays valid.
#[test]
fn the_example_config_passes_check_config() {
    let out = bot(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["check-config", "--config", "config/example.toml"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// JSON logs by configuration, and every line written inside a task names its trace.
#[test]
fn json_logs_carry_the_trace_and_span_ids_of_the_task() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/01-accepted-plain.eml"),
        maildir.join("new/1.sample.eml"),
    )
    .unwrap();
    let config = dir.path().join("bot.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nenabled = false\n[tracing]\nlog_format = \"json\"\n\
             [mail]\nsource = \"maildir\"\nmaildir = {:?}\n\
             [orders]\ndatabase_url = \"sqlite://{}\"\ncatalog_file = {:?}\n",
            maildir.display().to_string(),
            dir.path().join("orders.db").display(),
            catalog(),
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    let mut stored = None;
    let mut seen = Vec::new();
    while stored.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("order stored") {
                stored = Some(line.clone());
            }
            seen.push(line);
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let line = stored.unwrap_or_else(|| panic!("no 'order stored' line in {seen:#?}"));
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let span = &json["span"];
    assert_eq!(span["name"], "task", "{line}");
    let trace_id = span["trace_id"].as_str().unwrap_or_default();
    let span_id = span["span_id"].as_str().unwrap_or_default();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    assert!(span_id.len() == 16, "{line}");
    assert!(
        seen.iter().all(|l| l.starts_with('{')),
        "every line is JSON"
    );
    assert!(
        status.success(),
        "SIGTERM must stop the bot with exit 0: {status:?}"
    );
}
