//! `cargo xtask deploy`: the committed rendered files are fresh, and what they say is
//! checked by parsing them (YAML, the unit file, TOML, the Dockerfile), by
//! `systemd-analyze verify` (.ci/run installs it), and by running the unit's `ExecStartPre`
//! (the real `mail-order-bot check-config`) against the example config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml::Value as Yaml;
use xtask::deploy::{self, Rendered};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rendered() -> Vec<Rendered> {
    deploy::render_all(&root()).unwrap()
}

fn file(path: &str) -> String {
    rendered()
        .into_iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no rendered {path}"))
        .text
}

fn shutdown_timeout() -> Duration {
    let values = deploy::Values::read(&root()).unwrap();
    humantime::parse_duration(&values.shutdown_timeout).unwrap()
}

// --- freshness -------------------------------------------------------------------------------

#[test]
fn the_committed_rendered_files_are_fresh() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["deploy", "--check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_names_each_stale_file() {
    // A copy of the inputs, with the committed copies made stale three ways.
    let tmp = tempfile::tempdir().unwrap();
    let root = root();
    for r in rendered() {
        let dest = tmp.path().join(deploy::RENDERED).join(&r.path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, &r.text).unwrap();
        let src = root.join(deploy::TEMPLATES).join(&r.path);
        let dest = tmp.path().join(deploy::TEMPLATES).join(&r.path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src, dest).unwrap();
    }
    let catalog = tmp.path().join(deploy::CATALOG);
    std::fs::create_dir_all(catalog.parent().unwrap()).unwrap();
    std::fs::copy(root.join(deploy::CATALOG), catalog).unwrap();
    assert_eq!(deploy::stale(tmp.path()).unwrap(), Vec::<String>::new());

    let rendered_dir = tmp.path().join(deploy::RENDERED);
    std::fs::write(
        rendered_dir.join("mail-order-bot.service"),
        "edited by hand",
    )
    .unwrap();
    std::fs::remove_file(rendered_dir.join("k8s/redis.yaml")).unwrap();
    std::fs::write(rendered_dir.join("extra.yaml"), "x: 1").unwrap();
    let stale = deploy::stale(tmp.path()).unwrap();
    assert_eq!(
        stale,
        [
            "deploy/rendered/k8s/redis.yaml (missing)",
            "deploy/rendered/mail-order-bot.service (differs)",
            "deploy/rendered/extra.yaml (left over: no template makes it)",
        ]
    );

    // A changed shutdown timeout flows into the unit through the derived stop timeout.
    let config = tmp
        .path()
        .join(deploy::TEMPLATES)
        .join(deploy::EXAMPLE_CONFIG);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("shutdown_timeout = \"30s\"", "shutdown_timeout = \"2m\""),
    )
    .unwrap();
    let unit = deploy::render_all(tmp.path())
        .unwrap()
        .into_iter()
        .find(|r| r.path == "mail-order-bot.service")
        .unwrap();
    assert!(unit.text.contains("TimeoutStopSec=150\n"), "{}", unit.text);
}

#[test]
fn the_bundle_has_every_rendered_file_and_refuses_a_foreign_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundle");
    let files = rendered();
    deploy::write_bundle(&root(), &out, &files, None).unwrap();
    for r in &files {
        assert_eq!(std::fs::read_to_string(out.join(&r.path)).unwrap(), r.text);
    }
    assert!(out.join("catalog.csv").is_file());
    assert!(out.join(deploy::BUNDLE_MANIFEST).is_file());
    // Writing again replaces the earlier bundle.
    deploy::write_bundle(&root(), &out, &files, None).unwrap();

    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep").unwrap();
    let e = deploy::write_bundle(&root(), &foreign, &files, None).unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert!(foreign.join("precious.txt").is_file());
}

// --- Kubernetes ----------------------------------------------------------------------------

fn docs(path: &str) -> Vec<Yaml> {
    let text = file(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Yaml as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env_of(container: &Yaml) -> BTreeMap<String, Yaml> {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

#[test]
fn the_bot_manifests_parse_with_probes_secrets_and_a_long_enough_grace_period() {
    let docs = docs("k8s/mail-order-bot.yaml");
    let deployment = find(&docs, "Deployment", "mail-order-bot");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > shutdown_timeout().as_secs() + 15, "grace {grace}s");
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8080));
    assert_eq!(c["ports"][0]["name"].as_str(), Some("http"));
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health/live")
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["port"].as_str(), Some("http"));
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/health/ready")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("http")
    );
    for kind in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(!c["resources"][kind][what].is_null(), "no {kind}.{what}");
        }
    }
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );

    let env = env_of(c);
    for (var, key) in [
        ("MOB_MAIL__PASSWORD", "mail-password"),
        ("MOB_CONTROL__TOKEN", "control-token"),
        ("MOB_ORDERS__DATABASE_URL", "database-url"),
    ] {
        let secret = &env[var]["valueFrom"]["secretKeyRef"];
        assert_eq!(secret["name"].as_str(), Some("mail-order-bot"), "{var}");
        assert_eq!(secret["key"].as_str(), Some(key), "{var}");
        assert!(env[var]["value"].is_null(), "{var} must not be inline");
    }
    assert_eq!(env["MOB_QUEUE__BACKEND"]["value"].as_str(), Some("redis"));
    assert_eq!(
        env["MOB_CONTROL__BIND"]["value"].as_str(),
        Some("0.0.0.0:8080")
    );

    // The ConfigMap is the example config, verbatim, mounted where the args point.
    let config_map = find(&docs, "ConfigMap", "mail-order-bot");
    let values = deploy::Values::read(&root()).unwrap();
    assert_eq!(
        config_map["data"]["mail-order-bot.toml"].as_str(),
        Some(values.config_toml.as_str())
    );
    assert_eq!(
        config_map["data"]["catalog.csv"].as_str(),
        Some(values.catalog_csv.as_str())
    );
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["run", "--config", "/etc/mail-order-bot/mail-order-bot.toml"]
    );
    assert_eq!(
        c["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/mail-order-bot")
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"].as_str(),
        Some("mail-order-bot")
    );

    let service = find(&docs, "Service", "mail-order-bot");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(8080));
}

#[test]
fn the_redis_manifests_parse_and_match_the_bots_redis_url() {
    let docs = docs("k8s/redis.yaml");
    let deployment = find(&docs, "Deployment", "mail-order-bot-redis");
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(6379));
    assert!(!c["resources"]["limits"]["memory"].is_null());
    let service = find(&docs, "Service", "mail-order-bot-redis");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(6379));
    find(&docs, "PersistentVolumeClaim", "mail-order-bot-redis");

    let bot = docs_of_bot_env();
    assert_eq!(
        bot["MOB_QUEUE__REDIS_URL"]["value"].as_str(),
        Some("redis://mail-order-bot-redis:6379/0")
    );
}

fn docs_of_bot_env() -> BTreeMap<String, Yaml> {
    let docs = docs("k8s/mail-order-bot.yaml");
    let d = find(&docs, "Deployment", "mail-order-bot");
    env_of(&d["spec"]["template"]["spec"]["containers"][0])
}

// --- compose and Dockerfile ------------------------------------------------------------------

#[test]
fn the_compose_file_parses_with_bot_redis_and_dovecot() {
    let compose: Yaml = serde_yaml::from_str(&file("compose.yaml")).unwrap();
    let services = &compose["services"];
    for name in ["bot", "redis", "dovecot"] {
        assert!(!services[name].is_null(), "no service {name}");
    }
    let bot = &services["bot"];
    assert_eq!(
        bot["build"]["dockerfile"].as_str(),
        Some("deploy/rendered/Dockerfile")
    );
    assert!(!bot["depends_on"]["redis"].is_null());
    assert_eq!(
        bot["environment"]["MOB_QUEUE__REDIS_URL"].as_str(),
        Some("redis://redis:6379/0")
    );
    assert_eq!(
        bot["environment"]["MOB_MAIL__HOST"].as_str(),
        Some("dovecot")
    );
    let grace = bot["stop_grace_period"].as_str().unwrap();
    let grace = humantime::parse_duration(grace).unwrap();
    assert!(
        grace > shutdown_timeout() + Duration::from_secs(15),
        "{grace:?}"
    );
    // Published on loopback only.
    assert_eq!(bot["ports"][0].as_str(), Some("127.0.0.1:8080:8080"));
    // The mounted Dovecot config is part of the rendered set.
    assert!(rendered().iter().any(|r| r.path == "compose/dovecot.conf"));
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_non_root_with_a_health_check() {
    let text = file("Dockerfile");
    let instr: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (word, rest) = l.trim().split_once(' ')?;
            word.chars()
                .all(|c| c.is_ascii_uppercase())
                .then(|| (word.to_owned(), rest.to_owned()))
        })
        .collect();
    let froms: Vec<&str> = instr
        .iter()
        .filter(|(w, _)| w == "FROM")
        .map(|(_, r)| r.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].starts_with("rust:1.95") && froms[0].ends_with(" AS builder"));
    assert!(froms[1].starts_with("debian:") && froms[1].ends_with("-slim"));
    let user = instr.iter().rev().find(|(w, _)| w == "USER").unwrap();
    assert!(
        !user.1.starts_with("root") && !user.1.starts_with("0"),
        "{user:?}"
    );
    let health = instr.iter().find(|(w, _)| w == "HEALTHCHECK").unwrap();
    assert!(
        text.contains("http://127.0.0.1:8080/health/live"),
        "{health:?}"
    );
    assert!(instr.iter().any(|(w, r)| w == "EXPOSE" && r == "8080"));
    assert!(
        instr
            .iter()
            .any(|(w, r)| w == "STOPSIGNAL" && r == "SIGTERM")
    );
    assert!(text.contains("COPY --from=builder"));
}

/// The runtime stage of a Dockerfile (from `# --- runtime` on), COPY lines left out.
fn runtime_stage(text: &str) -> Vec<String> {
    let start = text.find("# --- runtime").expect("a runtime stage");
    text[start..]
        .lines()
        .filter(|l| !l.starts_with("COPY "))
        .map(str::to_owned)
        .collect()
}

/// The bundle's image needs nothing but the bundle: every COPY source is a file the
/// bundle holds (and its .dockerignore lets through), no stage builds from source, and
/// the runtime stage is the repository Dockerfile's, apart from where files come from.
#[test]
fn the_bundle_dockerfile_builds_from_the_bundle_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("built");
    std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
    let out = tmp.path().join("bundle");
    deploy::write_bundle(&root(), &out, &rendered(), Some(&bin)).unwrap();
    let text = std::fs::read_to_string(out.join("Dockerfile.bundle")).unwrap();
    let ignore = std::fs::read_to_string(out.join("Dockerfile.bundle.dockerignore")).unwrap();
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    let copies: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .collect();
    assert_eq!(copies.len(), 3, "{copies:?}");
    for copy in copies {
        assert!(!copy.contains("--from"), "{copy}");
        let source = copy.split_whitespace().next().unwrap();
        assert!(
            out.join(source).is_file(),
            "COPY {source}: not in the bundle"
        );
        assert!(
            allowed.contains(&source),
            "{source} is excluded by the .dockerignore"
        );
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("FROM ")).count(),
        1,
        "one stage, no build"
    );
    assert_eq!(runtime_stage(&text), runtime_stage(&file("Dockerfile")));
}

// --- systemd -------------------------------------------------------------------------------

/// An INI-like unit file: section -> (key, value) in order (keys repeat).
fn unit() -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = None;
    for (n, line) in file(deploy::UNIT).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        let section = current.clone().expect("a key before any section");
        sections
            .get_mut(&section)
            .unwrap()
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    sections
}

fn values<'a>(
    unit: &'a BTreeMap<String, Vec<(String, String)>>,
    section: &str,
    key: &str,
) -> Vec<&'a str> {
    unit[section]
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<(String, String)>>, section: &str, key: &str) -> &'a str {
    let v = values(unit, section, key);
    assert_eq!(v.len(), 1, "[{section}] {key}: {v:?}");
    v[0]
}

#[test]
fn the_unit_file_is_hardened_and_runs_check_config_first() {
    let unit = unit();
    assert_eq!(
        unit.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );
    for (key, want) in [
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "mail-order-bot"),
        ("KillSignal", "SIGTERM"),
        ("RestartPreventExitStatus", "2"),
    ] {
        assert_eq!(one(&unit, "Service", key), want, "{key}");
    }
    let stop: u64 = one(&unit, "Service", "TimeoutStopSec").parse().unwrap();
    assert!(
        stop > shutdown_timeout().as_secs() + 15,
        "TimeoutStopSec={stop}"
    );

    let start = one(&unit, "Service", "ExecStart");
    let pre = one(&unit, "Service", "ExecStartPre");
    let config = start.split_once(" run ").unwrap().1;
    assert_eq!(pre, start.replace(" run ", " check-config "));
    assert!(
        config.starts_with("--config /etc/mail-order-bot/"),
        "{config}"
    );
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");

    // Secrets come as credentials named by *_FILE variables, never inline.
    let env = values(&unit, "Service", "Environment");
    assert!(
        env.contains(&"MOB_MAIL__PASSWORD_FILE=%d/mail-password"),
        "{env:?}"
    );
    assert!(
        env.contains(&"MOB_CONTROL__TOKEN_FILE=%d/control-token"),
        "{env:?}"
    );
    assert!(!env.iter().any(|e| e.starts_with("MOB_MAIL__PASSWORD=")));
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze is missing: install systemd (.ci/run does)");
    assert!(version.status.success());
    // verify insists that the executables exist: point them at one that does.
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let text = file(deploy::UNIT).replace("/usr/local/bin/mail-order-bot", exe.to_str().unwrap());
    let path = tmp.path().join(deploy::UNIT);
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Unknown keys are only warnings (exit 0): any output at all is a failure.
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify: {}\n{stdout}{stderr}",
        out.status
    );
}

// --- the example config ----------------------------------------------------------------------

/// Every key of the configuration list in the mail-order-bot spec.
const SPEC_KEYS: &[&str] = &[
    "control.bind",
    "control.token",
    "tracing.exporter",
    "tracing.otlp_endpoint",
    "tracing.log_format",
    "queue.backend",
    "queue.capacity",
    "queue.redis_url",
    "queue.name",
    "queue.visibility_timeout",
    "queue.max_attempts",
    "workers.concurrency",
    "workers.task_timeout",
    "runtime.shutdown_timeout",
    "mail.source",
    "mail.host",
    "mail.port",
    "mail.tls",
    "mail.username",
    "mail.password",
    "mail.mailbox",
    "mail.poll_interval",
    "mail.processed_folder",
    "mail.rejected_folder",
    "mail.failed_folder",
    "mail.max_message_bytes",
    "mail.maildir",
    "orders.database_url",
    "orders.catalog_file",
];

/// Secrets are not written in the example: each deployment supplies them through the
/// environment, and the file says so in a comment naming the variable.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("mail.password", "MOB_MAIL__PASSWORD"),
    ("control.token", "MOB_CONTROL__TOKEN"),
];

#[test]
fn the_example_config_parses_and_has_every_key_of_the_spec() {
    let text = file(deploy::EXAMPLE_CONFIG);
    let config: toml::Table = toml::from_str(&text).unwrap();
    for key in SPEC_KEYS {
        let (section, name) = key.split_once('.').unwrap();
        let value = config.get(section).and_then(|s| s.get(name));
        match SECRET_KEYS.iter().find(|(k, _)| k == key) {
            Some((_, var)) => {
                assert!(
                    value.is_none(),
                    "{key}: a secret must not be in the example"
                );
                assert!(
                    text.contains(var),
                    "{key}: the example must say to set {var}"
                );
            }
            None => assert!(value.is_some(), "{key} missing from the example config"),
        }
    }
}

// --- ExecStartPre end to end -----------------------------------------------------------------

/// The `mail-order-bot` binary next to the xtask binary (the workspace's test build makes
/// it), built on demand when missing.
fn mail_order_bot() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    let bin = xtask.with_file_name("mail-order-bot");
    if !bin.is_file() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "mail-order-bot"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(
            status.success() && bin.is_file(),
            "mail-order-bot binary missing at {}: build it with `cargo build -p mail-order-bot`",
            bin.display()
        );
    }
    bin
}

/// Runs the unit's ExecStartPre as systemd would, mapped into a temp dir: the binary is
/// the real one, /etc/mail-order-bot and /var/lib/mail-order-bot are temp dirs holding the
/// bundle's config and catalog, `%d` is a credentials dir with one file per
/// `LoadCredential=`, and the unit's `Environment=` lines are set.
fn run_exec_start_pre(config_text: &str) -> std::process::Output {
    let unit = unit();
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let state = tmp.path().join("state");
    let creds = tmp.path().join("credentials");
    for d in [&etc, &state, &creds] {
        std::fs::create_dir_all(d).unwrap();
    }
    let map = |s: &str| {
        s.replace("/etc/mail-order-bot", etc.to_str().unwrap())
            .replace("/var/lib/mail-order-bot", state.to_str().unwrap())
            .replace("%d", creds.to_str().unwrap())
    };
    std::fs::write(etc.join("mail-order-bot.toml"), map(config_text)).unwrap();
    let values = deploy::Values::read(&root()).unwrap();
    std::fs::write(etc.join("catalog.csv"), values.catalog_csv).unwrap();
    for cred in values_of(&unit, "LoadCredential") {
        let name = cred.split_once(':').unwrap().0;
        std::fs::write(creds.join(name), format!("test-{name}\n")).unwrap();
    }

    let pre = map(one(&unit, "Service", "ExecStartPre"));
    let mut words = pre.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/mail-order-bot"));
    let mut cmd = Command::new(mail_order_bot());
    cmd.args(words)
        .current_dir(&state)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for e in values_of(&unit, "Environment") {
        let (k, v) = map(&e)
            .split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .unwrap();
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn values_of(unit: &BTreeMap<String, Vec<(String, String)>>, key: &str) -> Vec<String> {
    values(unit, "Service", key)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_units_exec_start_pre_accepts_the_example_config() {
    let out = run_exec_start_pre(&file(deploy::EXAMPLE_CONFIG));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check-config failed ({}):\n{stdout}{stderr}",
        out.status
    );
    assert!(stdout.contains("configuration ok"), "{stdout}");
    // The secrets came from the credential files and were not printed.
    assert!(!stdout.contains("test-mail-password") && !stderr.contains("test-mail-password"));
}

#[test]
fn the_units_exec_start_pre_rejects_a_broken_config_with_exit_2() {
    let broken = file(deploy::EXAMPLE_CONFIG)
        .replace("concurrency = 8", "concurency = 8")
        .replace("max_attempts = 5", "max_attempts = \"five\"");
    let out = run_exec_start_pre(&broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("workers.concurency"), "{stderr}");
    assert!(stderr.contains("queue.max_attempts"), "{stderr}");
}
