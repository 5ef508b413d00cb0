//! Configuration end to end on real files, real environment variables and real signals:
//! precedence, error reports, secrets, reload, the command line and the docs reference.
//!
//! Every test uses its own environment prefix (`PLBA_T<name>_`), so tests running in
//! parallel never see each other's variables.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{
    ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider, ConfigSnapshot, Secret,
};
use serde::Deserialize;
use serde_json::json;

use runtime_adapters_http::ControlSettings;
use runtime_adapters_memory::MemoryQueueSettings;
use runtime_adapters_otel::OtelSettings;
use runtime_adapters_redis::RedisQueueSettings;
use runtime_compose::read_settings;
use runtime_core::cli::{self, AppConfigSpec, ConfigArgs, PrintArgs};
use runtime_core::config::*;
use runtime_core::signal::StopToken;

const DEFAULTS: &str = r#"
[workers]
concurrency = 2

[queue]
name = "from-defaults"
capacity = 100

[mail]
host = "default.example"
port = 993
username = "orders"
password = ""
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MailConfig {
    host: String,
    port: u16,
    username: String,
    password: Secret,
}

fn spec(prefix: &'static str) -> AppConfigSpec {
    AppConfigSpec::new("testapp", prefix, DEFAULTS)
        .sections(&["mail"])
        .validator(section_validator::<MailConfig>("mail"))
        .validator(runtime_compose::validator("testapp"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    path
}

fn args(paths: &[&PathBuf]) -> ConfigArgs {
    ConfigArgs {
        config: paths.iter().map(|p| (*p).clone()).collect(),
    }
}

/// Sets variables for one test; removes them when dropped.
struct EnvGuard(Vec<String>);
impl EnvGuard {
    fn set(vars: &[(&str, &str)]) -> Self {
        for (k, v) in vars {
            set_env(k, v);
        }
        EnvGuard(vars.iter().map(|(k, _)| (*k).to_owned()).collect())
    }
}
impl Drop for EnvGuard {
    fn drop(&mut self) {
        for k in &self.0 {
            remove_env(k);
        }
    }
}

/// `std::env::set_var` is `unsafe` in edition 2024 and the workspace forbids `unsafe`;
/// the environment provider is therefore fed the variables explicitly where a test
/// needs them, through this process-wide table read by [`env_provider`].
static TEST_ENV: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn set_env(k: &str, v: &str) {
    let mut env = TEST_ENV.lock().unwrap();
    env.retain(|(name, _)| name != k);
    env.push((k.to_owned(), v.to_owned()));
}

fn remove_env(k: &str) {
    TEST_ENV.lock().unwrap().retain(|(name, _)| name != k);
}

/// The memory queue's keys of `[queue]`.
fn memory(snapshot: &ConfigSnapshot) -> MemoryQueueSettings {
    read_settings(snapshot, "queue").unwrap()
}

/// The control plane's keys, `[control]`.
fn control(snapshot: &ConfigSnapshot) -> ControlSettings {
    read_settings(snapshot, "control").unwrap()
}

async fn errors_of(spec: &AppConfigSpec, args: &ConfigArgs) -> (u8, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::check_config_to(spec, args, &mut out, &mut err).await;
    (code, String::from_utf8_lossy(&err).into_owned())
}

/// A stand-in for the database layer (the real one lives in runtime-adapters-config and
/// is tested there against PostgreSQL and SQLite): values with database origins.
struct FakeDb {
    rows: Vec<(String, serde_json::Value)>,
}

#[async_trait]
impl ConfigProvider for FakeDb {
    fn describe(&self) -> String {
        "database test".to_owned()
    }
    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let mut layer = ConfigLayer::new("database test");
        for (k, v) in &self.rows {
            layer.set(
                k.clone(),
                v.clone(),
                ConfigOrigin::Database {
                    table: "plba_config".into(),
                    key: k.clone(),
                },
            );
        }
        Ok(layer)
    }
}

#[tokio::test]
async fn every_layer_overrides_the_one_below() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.toml",
        "[queue]\nname = \"from-a\"\ncapacity = 200\n[workers]\nconcurrency = 3\n[tracing]\nlevel = \"debug\"\n[config_db]\nurl = \"fake://db\"\n",
    );
    let b = write(
        dir.path(),
        "b.yaml",
        "queue:\n  capacity: 300\nworkers:\n  concurrency: 4\n",
    );
    let _env = EnvGuard::set(&[("PLBA_TPREC_WORKERS__CONCURRENCY", "6")]);
    let seen_url = Arc::new(Mutex::new(None::<String>));
    let seen = seen_url.clone();
    let spec =
        spec("PLBA_TPREC")
            .env_vars(test_env)
            .layer("config_db", move |boot: &ConfigSnapshot| {
                // The factory sees files + env before the database layer exists.
                *seen.lock().unwrap() = boot
                    .get("config_db.url")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                Ok(Some(Box::new(FakeDb {
                    rows: vec![
                        ("workers.concurrency".into(), json!(5)),
                        ("tracing.level".into(), json!("warn")),
                    ],
                }) as Box<dyn ConfigProvider>))
            });
    let manager = cli::load_config(&spec, &args(&[&a, &b])).await.unwrap();
    let snap = manager.current();
    let p = manager.platform();
    assert_eq!(seen_url.lock().unwrap().as_deref(), Some("fake://db"));
    // defaults only
    assert_eq!(snap.get("mail.host"), Some(&json!("default.example")));
    assert_eq!(snap.origin("mail.host"), Some(&ConfigOrigin::Default));
    // file a over defaults
    assert_eq!(p.queue.name, "from-a");
    assert!(
        matches!(snap.origin("queue.name"), Some(ConfigOrigin::File { path, .. }) if path == &a)
    );
    // file b over file a
    assert_eq!(memory(&snap).capacity, 300);
    assert!(
        matches!(snap.origin("queue.capacity"), Some(ConfigOrigin::File { path, .. }) if path == &b)
    );
    // database over files
    assert_eq!(p.tracing.level, "warn");
    assert!(matches!(
        snap.origin("tracing.level"),
        Some(ConfigOrigin::Database { .. })
    ));
    // environment over database
    assert_eq!(p.workers.concurrency, 6);
    assert_eq!(
        snap.origin("workers.concurrency"),
        Some(&ConfigOrigin::Env {
            var: "PLBA_TPREC_WORKERS__CONCURRENCY".into()
        })
    );
    assert_eq!(
        manager.layer_names(),
        vec![
            "built-in defaults".to_owned(),
            format!("file {}", a.display()),
            format!("file {}", b.display()),
            "database test".to_owned(),
            "environment PLBA_TPREC_*".to_owned()
        ]
    );
}

#[tokio::test]
async fn every_bad_value_is_listed_with_key_source_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.toml",
        r#"
[workers]
concurrency = "many"
task_timeout = "soon"
concurency = 3

[queue]
backend = "kafka"

[control]
bind = "nowhere"
token = 12345

[tracing]
level = "info,,=="

[workrs]
x = 1

[mail]
port = 70000
password = ["hunter2-in-an-array"]
"#,
    );
    let _env = EnvGuard::set(&[("PLBA_TBAD_QUEUE__CAPACITY", "-5")]);
    let spec = spec("PLBA_TBAD").env_vars(test_env);
    let (code, text) = errors_of(&spec, &args(&[&f])).await;
    assert_eq!(code, cli::EXIT_CONFIG, "{text}");
    let file = f.display().to_string();
    for (key, needle) in [
        ("workers.concurrency", "expected a whole number"),
        ("workers.task_timeout", "expected a duration like \"30s\""),
        ("workers.concurency", "did you mean `concurrency`?"),
        ("queue.backend", "expected one of \"memory\", \"redis\""),
        (
            "control.bind",
            "expected an address like \"127.0.0.1:8080\"",
        ),
        ("control.token", "expected a string"),
        ("workrs", "did you mean `workers`?"),
        ("mail.port", "expected a whole number from 0 to 65535"),
        ("mail.password", "expected a string"),
        ("tracing.level", "expected a log filter"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("- {key} ")) || l.contains(&format!("- {key}:")))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"));
        assert!(line.contains(needle), "{key}: {line}");
        assert!(line.contains(&file), "{key} names its file: {line}");
    }
    let cap = text.lines().find(|l| l.contains("queue.capacity")).unwrap();
    assert!(
        cap.contains("environment variable PLBA_TBAD_QUEUE__CAPACITY"),
        "{cap}"
    );
    assert!(cap.contains("-5"), "{cap}");
    // Values are shown, secrets are not.
    assert!(text.contains("\"many\""), "{text}");
    assert!(
        !text.contains("12345") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("control.token = ***")),
        "{text}"
    );
}

#[tokio::test]
async fn range_checks_name_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "r.toml",
        "[workers]\nconcurrency = 0\n[queue]\nbackend = \"redis\"\nredis_url = \"http://:pw@x\"\n",
    );
    let (code, text) = errors_of(&spec("PLBA_TRANGE"), &args(&[&f])).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("workers.concurrency = 0"), "{text}");
    assert!(text.contains("from 1 to 4096"), "{text}");
    assert!(
        text.contains("queue.redis_url = \"http://:***@x\""),
        "{text}"
    );
    assert!(!text.contains("pw@"), "{text}");
}

#[tokio::test]
async fn missing_file_and_syntax_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (code, text) = errors_of(&spec("PLBA_TMISS"), &args(&[&missing])).await;
    assert_eq!(code, 2);
    assert!(text.contains("nope.toml"), "{text}");
    let broken = write(dir.path(), "broken.toml", "[queue\ncapacity = 1\n");
    let (code, text) = errors_of(&spec("PLBA_TMISS"), &args(&[&broken])).await;
    assert_eq!(code, 2);
    assert!(text.contains("broken.toml"), "{text}");
}

#[tokio::test]
async fn env_text_reaches_string_fields() {
    let _env = EnvGuard::set(&[
        ("PLBA_TSTR_MAIL__USERNAME", "12345"),
        ("PLBA_TSTR_MAIL__HOST", "mail.example.com"),
        ("PLBA_TSTR_QUEUE__VISIBILITY_TIMEOUT", "90s"),
        ("PLBA_TSTR_CONTROL__ENABLED", "false"),
    ]);
    let m = cli::load_config(
        &spec("PLBA_TSTR").env_vars(test_env),
        &ConfigArgs::default(),
    )
    .await
    .unwrap();
    let mail: MailConfig = section(&m.current(), "mail").unwrap();
    assert_eq!(mail.username, "12345");
    assert_eq!(mail.host, "mail.example.com");
    assert_eq!(
        m.platform().queue.visibility_timeout,
        Duration::from_secs(90)
    );
    assert!(!control(&m.current()).enabled);
}

#[tokio::test]
async fn secret_files_are_read_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "imap-password", "s3cr3t-from-file\n");
    let token = write(dir.path(), "admin-token", "t0ken-from-file\r\n");
    let f = write(
        dir.path(),
        "bot.toml",
        &format!(
            "[mail]\npassword_file = {:?}\n[control]\ntoken_file = {:?}\n[queue]\nredis_url = \"redis://:r3dispw@127.0.0.1:6379/0\"\n",
            secret.display().to_string(),
            token.display().to_string()
        ),
    );
    let spec = spec("PLBA_TSECRET");
    let m = cli::load_config(&spec, &args(&[&f])).await.unwrap();
    let mail: MailConfig = section(&m.current(), "mail").unwrap();
    assert_eq!(mail.password.expose(), "s3cr3t-from-file");
    assert_eq!(
        control(&m.current())
            .token
            .as_ref()
            .map(|t| t.expose().to_owned()),
        Some("t0ken-from-file".to_owned())
    );
    assert!(m.watch_paths().contains(&secret));

    let mut out = Vec::new();
    let mut err = Vec::new();
    let print = PrintArgs {
        config: args(&[&f]),
        origins: true,
    };
    assert_eq!(
        cli::print_config_to(&spec, &print, &mut out, &mut err).await,
        0
    );
    let text = String::from_utf8(out).unwrap();
    for leaked in ["s3cr3t", "t0ken", "r3dispw"] {
        assert!(!text.contains(leaked), "{leaked} leaked:\n{text}");
    }
    assert!(text.contains("password = \"***\""), "{text}");
    assert!(text.contains("token = \"***\""), "{text}");
    assert!(text.contains("redis://:***@127.0.0.1:6379/0"), "{text}");
    assert!(text.contains("secret file"), "origins are shown:\n{text}");
    // The printed config is valid TOML that loads again.
    let printed = write(dir.path(), "printed.toml", &text);
    assert!(cli::load_config(&spec, &args(&[&printed])).await.is_ok());
    assert!(!format!("{m:?}").contains("s3cr3t"));

    // An env var beats a password_file lower down; both in one layer is an error.
    let _env = EnvGuard::set(&[("PLBA_TSECRET2_MAIL__PASSWORD", "from-env")]);
    let m = cli::load_config(&spec_with_prefix_env("PLBA_TSECRET2"), &args(&[&f]))
        .await
        .unwrap();
    let mail: MailConfig = section(&m.current(), "mail").unwrap();
    assert_eq!(mail.password.expose(), "from-env");
    let both = write(
        dir.path(),
        "both.toml",
        &format!(
            "[mail]\npassword = \"x\"\npassword_file = {:?}\n",
            secret.display().to_string()
        ),
    );
    let (code, text) = errors_of(&spec, &args(&[&both])).await;
    assert_eq!(code, 2);
    assert!(
        text.contains("mail.password_file") && text.contains("not both"),
        "{text}"
    );
    let gone = write(
        dir.path(),
        "gone.toml",
        "[mail]\npassword_file = \"/nonexistent/secret\"\n",
    );
    let (code, text) = errors_of(&spec, &args(&[&gone])).await;
    assert_eq!(code, 2);
    assert!(
        text.contains("cannot read the secret file") && text.contains("gone.toml"),
        "{text}"
    );
}

fn spec_with_prefix_env(prefix: &'static str) -> AppConfigSpec {
    spec(prefix).env_vars(test_env)
}

/// The test environment table as the env provider's source.
fn test_env() -> Vec<(String, String)> {
    TEST_ENV.lock().map(|e| e.clone()).unwrap_or_default()
}

/// Log lines captured for one test (current-thread runtime: every log comes here).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Debug logs of this thread, captured until the guard drops.
fn capture_debug_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A log file written in the config's folder (`tracing.level = "trace"`) used to trigger
/// a reload per write, each logging again: only the config files' own events count.
#[tokio::test]
async fn writes_to_other_files_in_the_config_folder_do_not_reload() {
    let (logs, _default) = capture_debug_logs();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bot.toml", "[workers]\nconcurrency = 3\n");
    let m = Arc::new(
        cli::load_config(&spec("PLBA_TSIBLING"), &args(&[&f]))
            .await
            .unwrap(),
    );
    let stop = StopToken::new();
    let watcher = m
        .spawn_watchers_with(
            WatchOptions {
                files: true,
                sighup: false,
                debounce: Duration::from_millis(20),
            },
            stop.signal(),
        )
        .unwrap();
    let log = dir.path().join("bot.log");
    // Writes spaced beyond the debounce, so each would be a reload of its own.
    for i in 0..5 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(file, "line {i}").unwrap();
        drop(file);
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    // The config file's own change is the event to wait for; by the time it is seen,
    // the log writes before it have been seen too.
    write(dir.path(), "bot.toml", "[workers]\nconcurrency = 5\n");
    wait_for("the reload of the config file", || {
        m.platform().workers.concurrency == 5
    })
    .await;
    assert_eq!(m.reload_counts(), (1, 0));
    let text = logs.text();
    assert!(
        !text.contains("configuration unchanged"),
        "a write to another file reloaded the config:\n{text}"
    );
    stop.stop();
    drop(watcher);
}

#[tokio::test]
async fn reload_keeps_old_config_on_bad_file_and_notifies_on_good() {
    let (logs, _default) = capture_debug_logs();

    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bot.toml",
        "[workers]\nconcurrency = 3\n[mail]\npassword = \"first-s3cret\"\n",
    );
    let m = Arc::new(
        cli::load_config(&spec("PLBA_TRELOAD"), &args(&[&f]))
            .await
            .unwrap(),
    );
    let changes = Arc::new(Mutex::new(Vec::<(u64, Vec<String>, usize)>::new()));
    let c = changes.clone();
    m.subscribe_fn(move |change| {
        let conc = change
            .new
            .get("workers.concurrency")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        c.lock().unwrap().push((
            change.new.version,
            change.changed_keys.clone(),
            conc as usize,
        ));
    });
    let stop = StopToken::new();
    let watcher = m
        .spawn_watchers_with(
            WatchOptions {
                files: true,
                sighup: true,
                debounce: Duration::from_millis(50),
            },
            stop.signal(),
        )
        .unwrap();

    // A bad file is rejected, counted and logged; the old config stays.
    write(
        dir.path(),
        "bot.toml",
        "[workers]\nconcurrency = \"lots\"\n[mail]\npassword = \"second-s3cret\"\n",
    );
    wait_for("the rejected reload", || m.reload_counts().1 >= 1).await;
    assert_eq!(m.platform().workers.concurrency, 3);
    assert_eq!(m.current().version, 1);
    assert!(changes.lock().unwrap().is_empty());

    // A good file reaches the subscriber.
    write(
        dir.path(),
        "bot.toml",
        "[workers]\nconcurrency = 7\n[mail]\npassword = \"third-s3cret\"\n",
    );
    wait_for("the accepted reload", || {
        !changes.lock().unwrap().is_empty()
    })
    .await;
    {
        let seen = changes.lock().unwrap();
        assert_eq!(seen[0].0, 2);
        assert_eq!(seen[0].2, 7);
        assert!(
            seen[0].1.contains(&"workers.concurrency".to_owned()),
            "{:?}",
            seen[0].1
        );
        assert!(seen[0].1.contains(&"mail.password".to_owned()));
    }
    assert_eq!(m.platform().workers.concurrency, 7);

    // SIGHUP reloads too.
    write(
        dir.path(),
        "bot.toml",
        "[workers]\nconcurrency = 9\n[mail]\npassword = \"third-s3cret\"\n",
    );
    // Wait for the file watcher first, then check SIGHUP on its own with an unchanged
    // file: the reload is counted as accepted-unchanged, visible in debug logs.
    wait_for("the second accepted reload", || {
        m.platform().workers.concurrency == 9
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the SIGHUP reload", || {
        logs.text().contains("trigger=\"SIGHUP\"")
    })
    .await;

    stop.stop();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();

    let text = logs.text();
    assert!(text.contains("configuration reload rejected"), "{text}");
    assert!(text.contains("workers.concurrency"), "{text}");
    assert!(text.contains("configuration reloaded"), "{text}");
    for secret in ["first-s3cret", "second-s3cret", "third-s3cret"] {
        assert!(!text.contains(secret), "{secret} leaked into logs:\n{text}");
    }
}

#[tokio::test]
async fn direct_reload_reports_errors_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bot.toml", "[queue]\ncapacity = 10\n");
    let m = cli::load_config(&spec("PLBA_TDIRECT"), &args(&[&f]))
        .await
        .unwrap();
    write(dir.path(), "bot.toml", "[queue]\ncapacity = 0\n");
    let report = m.reload().await;
    assert!(!report.accepted);
    assert_eq!(report.version, 1);
    assert_eq!(report.errors[0].key, "queue.capacity");
    assert!(matches!(
        report.errors[0].origin,
        Some(ConfigOrigin::File { .. })
    ));
    assert_eq!(m.reload_counts(), (0, 1));
    write(dir.path(), "bot.toml", "[queue]\ncapacity = 20\n");
    let report = m.reload().await;
    assert!(report.accepted);
    assert_eq!(report.version, 2);
    assert_eq!(report.changed_keys, vec!["queue.capacity".to_owned()]);
    assert_eq!(m.reload_counts(), (1, 1));
    assert_eq!(memory(&m.current()).capacity, 20);
}

#[tokio::test]
async fn check_config_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.toml", "[workers]\nconcurrency = 4\n");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::check_config_to(&spec("PLBA_TOK"), &args(&[&f]), &mut out, &mut err).await;
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(String::from_utf8_lossy(&out).contains("configuration ok"));
}

#[test]
fn apps_flatten_the_runtime_commands() {
    use clap::{Parser, Subcommand};
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }
    #[derive(Subcommand)]
    enum Command {
        #[command(flatten)]
        Runtime(cli::RuntimeCommand),
        Orders {
            #[arg(long)]
            json: bool,
        },
        Demo,
    }
    let c = Cli::try_parse_from(["bot", "run", "--config", "a.toml", "-c", "b.toml"]).unwrap();
    assert!(matches!(
        c.command,
        Command::Runtime(cli::RuntimeCommand::Run(ConfigArgs { config })) if config == vec![PathBuf::from("a.toml"), PathBuf::from("b.toml")]
    ));
    let c = Cli::try_parse_from(["bot", "print-config", "--origins"]).unwrap();
    assert!(matches!(
        c.command,
        Command::Runtime(cli::RuntimeCommand::PrintConfig(PrintArgs {
            origins: true,
            ..
        }))
    ));
    assert!(matches!(
        Cli::try_parse_from(["bot", "orders", "--json"])
            .unwrap()
            .command,
        Command::Orders { json: true }
    ));
    assert!(matches!(
        Cli::try_parse_from(["bot", "demo"]).unwrap().command,
        Command::Demo
    ));
}

/// The reference in docs/configuration.md is checked against the real types: the TOML
/// example of the platform sections must load into `PlatformConfig` (unknown keys are
/// errors there), equal the defaults, and mention every key; the table must list every
/// key with its default.
#[tokio::test]
async fn docs_reference_matches_the_platform_types() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let block = doc
        .split("```toml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```toml block with the platform sections");
    let layer = DefaultsProvider::new(block).load().await.unwrap();
    let snap = ConfigSnapshot::from_layers(1, &[layer]);
    let parsed =
        PlatformConfig::from_snapshot(&snap).unwrap_or_else(|e| panic!("doc example: {e}"));
    let defaults = PlatformConfig::default();
    assert_eq!(parsed, defaults, "the doc example shows the defaults");
    // The adapters' keys: unknown ones are errors of the plan, and each shows its default.
    runtime_compose::plan(&snap, "docs").unwrap_or_else(|e| panic!("doc example: {e}"));
    assert_eq!(memory(&snap), MemoryQueueSettings::default(), "doc example");
    assert_eq!(control(&snap), ControlSettings::default(), "doc example");
    let otel: OtelSettings = read_settings(&snap, "tracing").unwrap();
    assert_eq!(otel, OtelSettings::default(), "doc example");
    let redis: RedisQueueSettings = read_settings(&snap, "queue").unwrap();
    let redis_default = RedisQueueSettings::default();
    assert_eq!(redis.redis_url.expose(), redis_default.redis_url.expose());
    let defaults = all_defaults();

    // Every key of the types (from serializing the defaults; secrets included by name).
    let mut keys = Vec::new();
    flatten("", &defaults, &mut keys);
    assert!(keys.len() >= 18, "{keys:?}");
    for key in &keys {
        let (section, name) = key.split_once('.').unwrap();
        let section_text = block
            .split(&format!("[{section}]"))
            .nth(1)
            .map(|s| s.split("\n[").next().unwrap_or(s))
            .unwrap_or_else(|| panic!("section [{section}] missing from the doc example"));
        assert!(
            section_text.contains(&format!("\n{name} ="))
                || section_text.contains(&format!("\n# {name} =")),
            "key {key} missing from the doc example"
        );
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("key {key} missing from the reference table"));
        let row = row.replace("\\|", "/");
        let default_cell = row.split('|').nth(3).unwrap().trim();
        let expected = match snap_value(&defaults, key) {
            serde_json::Value::Null => "(none)".to_owned(),
            // Secrets serialize as ***; the one with a default is the Redis URL.
            serde_json::Value::String(s) if s == "***" => {
                assert_eq!(
                    key, "queue.redis_url",
                    "a new secret with a default: extend this test"
                );
                format!("`{:?}`", redis_default.redis_url.expose())
            }
            v => format!(
                "`{}`",
                runtime_core::config::to_toml(&json!({ "v": v }), None)
                    .trim()
                    .trim_start_matches("v = ")
            ),
        };
        assert_eq!(default_cell, expected, "default of {key} in the table");
    }
    let table_rows = doc
        .lines()
        .filter(|l| {
            l.starts_with("| `")
                && PLATFORM_SECTIONS
                    .iter()
                    .any(|s| l.starts_with(&format!("| `{s}.")))
        })
        .count();
    assert_eq!(
        table_rows,
        keys.len(),
        "the table lists exactly the platform keys"
    );
}

/// The defaults of every platform key: core's sections with each adapter's keys added.
fn all_defaults() -> serde_json::Value {
    let mut tree = serde_json::to_value(PlatformConfig::default()).unwrap();
    for (section, settings) in [
        (
            "queue",
            serde_json::to_value(MemoryQueueSettings::default()),
        ),
        ("queue", serde_json::to_value(RedisQueueSettings::default())),
        ("tracing", serde_json::to_value(OtelSettings::default())),
        ("control", serde_json::to_value(ControlSettings::default())),
    ] {
        for (k, v) in settings.unwrap().as_object().unwrap() {
            tree[section][k] = v.clone();
        }
    }
    tree
}

fn snap_value(tree: &serde_json::Value, key: &str) -> serde_json::Value {
    let tree = tree.clone();
    key.split('.').fold(tree, |v, k| {
        v.get(k).cloned().unwrap_or(serde_json::Value::Null)
    })
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// Real process environment variables. `std::env::set_var` is `unsafe` in edition 2024
/// and the workspace forbids `unsafe`, so the test runs itself again as a child process
/// with the variables set, and the child does the checks.
#[test]
fn real_environment_variables_override_files_and_name_themselves_in_errors() {
    const TEST: &str =
        "config::real_environment_variables_override_files_and_name_themselves_in_errors";
    if let Some(file) = std::env::var_os("PLBATEST_CHILD_FILE") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let file = PathBuf::from(file);
            let m = cli::load_config(&spec("PLBA_TCHILD"), &args(&[&file])).await.unwrap();
            assert_eq!(m.platform().workers.concurrency, 11);
            assert_eq!(memory(&m.current()).capacity, 50, "the file still wins over defaults");
            assert_eq!(
                m.current().origin("workers.concurrency"),
                Some(&ConfigOrigin::Env { var: "PLBA_TCHILD_WORKERS__CONCURRENCY".into() })
            );
            let mail: MailConfig = section(&m.current(), "mail").unwrap();
            assert_eq!(mail.password.expose(), "env-s3cret");
            let (code, text) = errors_of(&spec("PLBA_TCHILDBAD"), &args(&[&file])).await;
            assert_eq!(code, 2, "{text}");
            assert!(
                text.contains("queue.capacity = \"lots\" (from environment variable PLBA_TCHILDBAD_QUEUE__CAPACITY)"),
                "{text}"
            );
            assert!(text.contains("mail.port"), "{text}");
            assert!(!text.contains("env-s3cret"), "{text}");
        });
        println!("CHILD-OK");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bot.toml",
        "[workers]\nconcurrency = 3\n[queue]\ncapacity = 50\n",
    );
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env("PLBATEST_CHILD_FILE", &file)
        .env("PLBA_TCHILD_WORKERS__CONCURRENCY", "11")
        .env("PLBA_TCHILD_MAIL__PASSWORD", "env-s3cret")
        .env("PLBA_TCHILDBAD_QUEUE__CAPACITY", "lots")
        .env("PLBA_TCHILDBAD_MAIL__PORT", "-1")
        .env("PLBA_TCHILDBAD_MAIL__PASSWORD", "env-s3cret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn control_connection_keys_are_read_and_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "c.toml",
        "[control]\nheader_read_timeout = \"2s\"\nidle_timeout = \"300ms\"\n",
    );
    let _env = EnvGuard::set(&[("PLBA_TCTL_CONTROL__MAX_CONNECTIONS", "7")]);
    let m = cli::load_config(&spec("PLBA_TCTL").env_vars(test_env), &args(&[&f]))
        .await
        .unwrap();
    let c = control(&m.current());
    assert_eq!(c.header_read_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.idle_timeout, Some(Duration::from_millis(300)));
    assert_eq!(c.max_connections, Some(7));
    // Unset keys stay unset: the control plane's own defaults apply.
    let m = cli::load_config(&spec("PLBA_TCTL0"), &ConfigArgs::default())
        .await
        .unwrap();
    assert_eq!(control(&m.current()).idle_timeout, None);

    let bad = write(
        dir.path(),
        "bad.toml",
        "[control]\nheader_read_timeout = \"0s\"\nidle_timeout = \"0s\"\nmax_connections = 0\n",
    );
    let (code, text) = errors_of(&spec("PLBA_TCTLBAD"), &args(&[&bad])).await;
    assert_eq!(code, cli::EXIT_CONFIG, "{text}");
    for key in [
        "control.header_read_timeout",
        "control.idle_timeout",
        "control.max_connections",
    ] {
        assert!(text.contains(key), "{key} in:\n{text}");
    }
}

#[tokio::test]
async fn stop_timeouts_and_lease_renewal_are_read_and_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "s.toml",
        "[runtime]\nsource_stop_timeout = \"3s\"\nrelease_timeout = \"4s\"\ncontrol_stop_timeout = \"1s\"\n[workers]\nlease_renewal = \"7s\"\n",
    );
    let m = cli::load_config(&spec("PLBA_TSTOP"), &args(&[&f]))
        .await
        .unwrap();
    let p = m.platform();
    assert_eq!(p.runtime.source_stop_timeout, Duration::from_secs(3));
    assert_eq!(p.runtime.release_timeout, Duration::from_secs(4));
    assert_eq!(p.runtime.control_stop_timeout, Duration::from_secs(1));
    assert_eq!(p.lease_renewal(), Duration::from_secs(7));
    // Unset: the documented defaults; the lease is renewed at a third of its timeout.
    let d = PlatformConfig::default();
    assert_eq!(
        (
            d.runtime.source_stop_timeout,
            d.runtime.release_timeout,
            d.runtime.control_stop_timeout
        ),
        (
            Duration::from_secs(10),
            Duration::from_secs(10),
            Duration::from_secs(5)
        )
    );
    assert_eq!(d.lease_renewal(), Duration::from_secs(20));

    let bad = write(
        dir.path(),
        "bad.toml",
        "[runtime]\nsource_stop_timeout = \"0s\"\nrelease_timeout = \"0s\"\ncontrol_stop_timeout = \"0s\"\n[queue]\nvisibility_timeout = \"10s\"\n[workers]\nlease_renewal = \"10s\"\n",
    );
    let (code, text) = errors_of(&spec("PLBA_TSTOPBAD"), &args(&[&bad])).await;
    assert_eq!(code, cli::EXIT_CONFIG, "{text}");
    for key in [
        "runtime.source_stop_timeout",
        "runtime.release_timeout",
        "runtime.control_stop_timeout",
        "workers.lease_renewal",
    ] {
        assert!(text.contains(key), "{key} in:\n{text}");
    }
    assert!(text.contains("below queue.visibility_timeout"), "{text}");
    let not_a_duration = write(
        dir.path(),
        "nad.toml",
        "[runtime]\ncontrol_stop_timeout = \"soon\"\n",
    );
    let (code, text) = errors_of(&spec("PLBA_TSTOPNAD"), &args(&[&not_a_duration])).await;
    assert_eq!(code, cli::EXIT_CONFIG, "{text}");
    assert!(text.contains("runtime.control_stop_timeout"), "{text}");
}

#[tokio::test]
async fn pool_limit_keys_are_read_and_each_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "l.toml",
        "[workers]\nconcurrency_key = \"customer\"\nrate = \"1000/m\"\nrate_per_key = true\n",
    );
    let m = cli::load_config(&spec("PLBA_TLIM"), &args(&[&good]))
        .await
        .unwrap();
    let limits = m.platform().workers.limits().unwrap();
    assert_eq!(limits.concurrency_key.as_deref(), Some("customer"));
    assert_eq!(limits.per_key, 1, "per_key defaults to 1 with a key");
    assert_eq!(limits.rate.unwrap().to_string(), "1000/m");
    assert!(limits.rate_per_key);
    assert!(PlatformConfig::default().workers.limits().is_none());

    for (i, (text, key, expected)) in [
        (
            "[workers]\nrate = \"50/x\"\n",
            "workers.rate",
            "expected a rate like",
        ),
        (
            "[workers]\nrate = \"fast\"\n",
            "workers.rate",
            "expected a rate like",
        ),
        (
            "[workers]\nconcurrency_key = \"c\"\nper_key = 0\n",
            "workers.per_key",
            "at least 1",
        ),
        (
            "[workers]\nper_key = 3\n",
            "workers.per_key",
            "needs workers.concurrency_key",
        ),
        (
            "[workers]\nrate = \"5/s\"\nrate_per_key = true\n",
            "workers.rate_per_key",
            "needs workers.concurrency_key",
        ),
        (
            "[workers]\nconcurrency_key = \"c\"\nrate_per_key = true\n",
            "workers.rate_per_key",
            "needs workers.rate",
        ),
        (
            "[workers]\nconcurrency_key = \" \"\n",
            "workers.concurrency_key",
            "task header",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let bad = write(dir.path(), &format!("bad{i}.toml"), text);
        let (code, out) = errors_of(&spec("PLBA_TLIMBAD"), &args(&[&bad])).await;
        assert_eq!(code, cli::EXIT_CONFIG, "{text}: {out}");
        assert!(out.contains(key) && out.contains(expected), "{text}: {out}");
    }
}
