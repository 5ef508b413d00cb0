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
    // No database yet: say which one and where its URL came from; create nothing.
    for args in [&["orders"][..], &["orders", "--json"]] {
        let out = bot(dir.path(), args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(err.contains("orders.database_url"), "{err}");
        assert!(err.contains("./var/orders.db does not exist"), "{err}");
        assert!(err.contains("built-in default"), "{err}");
    }
    assert!(
        !dir.path().join("var").exists(),
        "listing must not create a database"
    );

    let out = bot(dir.path(), &["--help"]);
    let help = text(&out.stdout);
    for cmd in ["run", "check-config", "print-config", "orders", "demo"] {
        assert!(help.contains(cmd), "{help}");
    }
}

/// Every subcommand's `--help` shows examples and the exit codes.
#[test]
fn subcommand_help_has_examples_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["run", "check-config", "print-config", "orders", "demo"] {
        let out = bot(dir.path(), &[cmd, "--help"]);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{help}");
        assert!(
            help.contains(&format!("Examples:\n  mail-order-bot {cmd}")),
            "{cmd}: {help}"
        );
        assert!(help.contains("Exit codes:\n  0  "), "{cmd}: {help}");
        assert!(help.contains("\n  1  any other failure"), "{cmd}: {help}");
        assert!(
            help.contains("\n  2  the configuration is wrong"),
            "{cmd}: {help}"
        );
        // Only the long-running commands can be cut short by a second signal.
        let interruptible = matches!(cmd, "run" | "demo");
        assert_eq!(help.contains("\n  130  "), interruptible, "{cmd}: {help}");
    }
}

/// `orders` refuses a configuration `check-config` refuses, with the same message.
#[test]
fn orders_rejects_an_invalid_config_like_check_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[orders]\ndatabase_url = \"sqlite://orders.db\"\n[workers]\nconcurrency = \"many\"\n",
    )
    .unwrap();
    let out = bot(dir.path(), &["orders", "--config", "bad.toml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("workers.concurrency"), "{err}");
    assert!(err.contains("bad.toml:4"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// Listing orders needs only `[orders]`: a reporting machine without the IMAP password
/// still lists them.
#[test]
fn orders_work_without_the_mailbox_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let url = format!("sqlite://{}", db.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = mail_order_bot::store::OrderStore::connect(&url)
            .await
            .unwrap();
        store.close().await;
    });
    std::fs::write(
        dir.path().join("bot.toml"),
        format!(
            "[mail]\nsource = \"imap-poll\"\nhost = \"imap.example.com\"\n\
             username = \"orders\"\n[orders]\ndatabase_url = \"{url}\"\n"
        ),
    )
    .unwrap();
    let out = bot(dir.path(), &["orders", "--json", "--config", "bot.toml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(text(&out.stdout).trim(), "[]");
}

/// A wrong SQLite path is named, exits 2 and is not created.
#[test]
fn orders_names_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        "[orders]\ndatabase_url = \"sqlite:///nonexistent-dir/orders.db\"\n",
    )
    .unwrap();
    let out = bot(dir.path(), &["orders", "--config", "bot.toml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/nonexistent-dir/orders.db does not exist"),
        "{err}"
    );
    assert!(err.contains("bot.toml:2"), "{err}");
    assert!(!text(&out.stdout).contains("no orders yet"));
    assert!(!Path::new("/nonexistent-dir").exists());
}

/// An unreachable database layer is a configuration problem for every command.
#[test]
fn an_unreachable_config_database_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bot.toml"),
        format!(
            "[orders]\ncatalog_file = {:?}\n[config_db]\nurl = \"postgres://postgres@127.0.0.1:1/test\"\nconnect_timeout = \"1s\"\n",
            catalog()
        ),
    )
    .unwrap();
    for cmd in ["print-config", "check-config", "orders"] {
        let out = bot(dir.path(), &[cmd, "--config", "bot.toml"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("plba_config"), "{cmd}: {err}");
        assert!(out.stdout.is_empty(), "{cmd}: {}", text(&out.stdout));
    }
}

/// Creates a SQLite order store with one order at `file`.
fn store_with_an_order(file: &Path) {
    let url = format!("sqlite://{}", file.display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = mail_order_bot::store::OrderStore::connect(&url)
            .await
            .unwrap();
        let catalog =
            mail_order_bot::domain::Catalog::from_csv_file(Path::new(&catalog())).unwrap();
        let order = mail_order_bot::domain::process_message(
            mail_order_bot::demo::SAMPLES[0].1,
            &catalog,
            1 << 20,
            None,
        );
        store.save(&order).await.unwrap();
        store.close().await;
    });
}

/// Runs the bot with its stdout a pipe nobody reads (closed before the bot starts, so
/// every write fails with EPIPE, as under `| head -1` once head has exited).
fn bot_into_closed_pipe(dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdout(writer)
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

/// `orders | head -1` and `print-config | head -1`: a closed stdout is a normal end.
#[test]
fn a_closed_stdout_is_a_normal_end() {
    let dir = tempfile::tempdir().unwrap();
    store_with_an_order(&dir.path().join("orders.db"));
    std::fs::write(
        dir.path().join("bot.toml"),
        format!(
            "[orders]\ndatabase_url = \"sqlite://orders.db\"\ncatalog_file = {:?}\n",
            catalog()
        ),
    )
    .unwrap();
    for args in [
        &["orders", "-c", "bot.toml"][..],
        &["orders", "--json", "-c", "bot.toml"],
        &["print-config", "-c", "bot.toml"],
        &["check-config", "-c", "bot.toml"],
    ] {
        let out = bot_into_closed_pipe(dir.path(), args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} wrote to stderr: {err}");
    }
    // The pipe was the only thing wrong: the same command lists the order.
    let out = bot(dir.path(), &["orders", "-c", "bot.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("accepted"),
        "{}",
        text(&out.stdout)
    );
}

/// Relative paths in a config file are relative to the file's directory, not to the
/// working directory: the catalog, secret files, the Maildir and a SQLite database.
#[test]
fn relative_paths_in_a_config_file_are_relative_to_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::copy(catalog(), conf.join("catalog.csv")).unwrap();
    std::fs::write(conf.join("token"), "s3cr3t-token\n").unwrap();
    std::fs::write(
        conf.join("bot.toml"),
        "[control]\ntoken_file = \"token\"\n\
         [mail]\nsource = \"maildir\"\nmaildir = \"mail\"\n\
         [orders]\ncatalog_file = \"catalog.csv\"\ndatabase_url = \"sqlite://./orders.db?mode=rwc\"\n",
    )
    .unwrap();
    let work = dir.path().join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    let file = conf.join("bot.toml");
    let file = file.to_str().unwrap();

    let out = bot(&work, &["check-config", "--config", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = bot(&work, &["print-config", "--config", file]);
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let etc = conf.display().to_string();
    assert!(
        printed.contains(&format!("maildir = \"{etc}/mail\"")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("catalog_file = \"{etc}/catalog.csv\"")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "database_url = \"sqlite://{etc}/./orders.db?mode=rwc\""
        )),
        "{printed}"
    );
    assert!(!printed.contains("s3cr3t-token"), "{printed}");

    // The database is looked for beside the file, and the message names that path.
    let out = bot(&work, &["orders", "--config", file]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{etc}/./orders.db does not exist")),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "nothing created in the working directory"
    );
}

/// The commands of the README's "Running the bot for real", as written, from the
/// repository root (all but `run`, which runs until stopped and needs Redis and IMAP);
/// `my.toml` is "your copy", here one with a SQLite store.
#[test]
fn readme_commands_work_from_the_repo_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    store_with_an_order(&dir.path().join("orders.db"));
    let my = dir.path().join("my.toml");
    std::fs::write(&my, "[orders]\ndatabase_url = \"sqlite://orders.db\"\n").unwrap();
    let my = my.to_str().unwrap();

    let prefix = "cargo run -p mail-order-bot -- ";
    let commands: Vec<Vec<&str>> = readme
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .map(|rest| {
            let rest = rest.split(" #").next().unwrap_or(rest);
            rest.split_whitespace()
                .map(|arg| if arg == "my.toml" { my } else { arg })
                .collect()
        })
        .collect();
    let subcommands: Vec<&str> = commands.iter().map(|c| c[0]).collect();
    for expected in ["demo", "check-config", "print-config", "run", "orders"] {
        assert!(
            subcommands.contains(&expected),
            "{expected} missing from the README: {subcommands:?}"
        );
    }
    for args in commands.iter().filter(|c| c[0] != "run" && c[0] != "demo") {
        let out = bot(&root, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} from the repo root: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }
}

/// Runs `demo` in `dir` until it says it is watching; returns its stdout so far and the
/// child (still running).
fn demo_until_watching(dir: &Path) -> (String, std::process::Child) {
    use std::io::BufRead;
    let mut cmd = Command::new(BIN);
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("demo.stderr"))
        .unwrap();
    cmd.arg("demo")
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr);
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

    // The progress is on stdout, not mixed with the runtime's INFO logs on stderr.
    let logs = std::fs::read_to_string(dir.path().join("demo.stderr")).unwrap();
    assert!(
        !logs.contains(" INFO "),
        "the demo's stderr holds INFO logs:\n{logs}"
    );
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

/// Runs the bot on one sample email with `log_format`; returns the "order stored" log
/// line, every line seen, and whether it exited 0 on SIGTERM.
fn order_stored_line(log_format: &str) -> (String, Vec<String>, bool) {
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
            "[control]\nenabled = false\n[tracing]\nlog_format = \"{log_format}\"\n\
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
    (line, seen, status.success())
}

/// JSON logs by configuration, and every line written inside a task names its trace,
/// and its task id once.
#[test]
fn json_logs_carry_the_trace_and_span_ids_of_the_task() {
    let (line, seen, stopped) = order_stored_line("json");
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
    let task_id = span["task_id"].as_str().unwrap_or_default();
    assert!(!task_id.is_empty(), "{line}");
    assert_eq!(line.matches(task_id).count(), 1, "task id twice: {line}");
    assert!(
        seen.iter().all(|l| l.starts_with('{')),
        "every line is JSON"
    );
    assert!(stopped, "SIGTERM must stop the bot with exit 0");
}

/// The default (pretty) log line of a task names each field once: the task id comes
/// from the `task` span, not again from the event.
#[test]
fn pretty_log_lines_name_the_task_id_once() {
    let (line, _, stopped) = order_stored_line("pretty");
    let task_id = line
        .split("task_id=")
        .nth(1)
        .and_then(|rest| rest.split([' ', '}']).next())
        .unwrap_or_else(|| panic!("no task_id in {line}"));
    assert_eq!(task_id.len(), 32, "{line}");
    assert_eq!(line.matches(task_id).count(), 1, "task id twice: {line}");
    assert!(line.contains("trace_id="), "{line}");
    assert!(stopped, "SIGTERM must stop the bot with exit 0");
}
