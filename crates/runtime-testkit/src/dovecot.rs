//! A real IMAP server per test: Dovecot on free loopback ports, in its own temp dir.
//!
//! [`DovecotServer::start`] writes a private `dovecot.conf` (passwd-file auth, Maildir
//! storage, no systemd), starts `/usr/sbin/dovecot` on a free port and waits until it
//! accepts connections (about 40 ms). Options: TLS on a second port with a throwaway CA and
//! a leaf certificate made by the `openssl` CLI (rustls refuses a lone self-signed
//! certificate), and a capability list without `IDLE` or `MOVE` to exercise fallbacks.
//!
//! Dovecot `setsid()`s, so its master pid is its process group: dropping the fixture sends
//! SIGTERM to the whole group (about 15 ms; the master alone takes a second). A test
//! process killed before it drops its fixture leaves the server running; the next
//! fixture started on the machine stops such orphans and removes their dirs.
//!
//! Running as root, Dovecot refuses to touch mail as UID 0, so mail and home dirs belong to
//! `nobody`. Test assertions read mailbox state with `doveadm` (no IMAP client needed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

const DOVECOT: &str = "/usr/sbin/dovecot";
const DOVEADM: &str = "doveadm";
/// Temp dirs of fixtures start with this.
const DIR_PREFIX: &str = "plba-dovecot-";
/// The pid of the process that owns a fixture, in its dir.
const OWNER_FILE: &str = "owner.pid";
/// Dovecot's exit code when a listener's port is taken.
const EXIT_PORT_TAKEN: i32 = 89;

/// Capabilities Dovecot 2.3 announces after login; options remove some of them.
const CAPABILITIES: &[&str] = &[
    "IMAP4rev1",
    "SASL-IR",
    "LOGIN-REFERRALS",
    "ID",
    "ENABLE",
    "IDLE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "LITERAL+",
];

/// Options for a [`DovecotServer`].
#[derive(Clone, Debug)]
pub struct DovecotBuilder {
    tls: bool,
    idle: bool,
    mv: bool,
    user: String,
    password: String,
}

impl Default for DovecotBuilder {
    fn default() -> Self {
        DovecotBuilder {
            tls: false,
            idle: true,
            mv: true,
            user: "test@example.com".to_owned(),
            password: "secret".to_owned(),
        }
    }
}

impl DovecotBuilder {
    /// Also listen with implicit TLS on a second port, with a certificate for `localhost`
    /// and `127.0.0.1` signed by a fresh CA ([`DovecotServer::ca_pem`]). Enables STARTTLS
    /// on the plain port too.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Announce no `IDLE` capability (clients must fall back to polling).
    pub fn without_idle(mut self) -> Self {
        self.idle = false;
        self
    }

    /// Announce no `MOVE` capability (clients must COPY, flag `\Deleted` and expunge).
    pub fn without_move(mut self) -> Self {
        self.mv = false;
        self
    }

    /// The login name (default `test@example.com`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// The password (default `secret`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// Writes the configuration and starts Dovecot.
    pub async fn start(self) -> Result<DovecotServer> {
        DovecotServer::launch(self).await
    }
}

/// One message as `doveadm fetch` reports it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredMessage {
    /// The message's UID in its mailbox.
    pub uid: u32,
    /// System flags (`\Seen`) and keywords (`$OrderBotFailed`), `\Recent` left out.
    pub flags: Vec<String>,
}

impl StoredMessage {
    /// True if the flag or keyword is set (case-sensitive, as stored).
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// A running Dovecot; stopped (the whole process group) when dropped.
#[derive(Debug)]
pub struct DovecotServer {
    dir: tempfile::TempDir,
    conf: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    options: DovecotBuilder,
    master_pid: Option<u32>,
}

impl DovecotServer {
    /// Starts a plain-text server with IDLE and MOVE, user `test@example.com` / `secret`.
    pub async fn start() -> Result<DovecotServer> {
        DovecotServer::builder().start().await
    }

    /// Options for a server.
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder::default()
    }

    async fn launch(options: DovecotBuilder) -> Result<DovecotServer> {
        if !Path::new(DOVECOT).exists() {
            bail!("dovecot not found: install it with `apt-get install -y dovecot-imapd`");
        }
        reap_orphans();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .context("cannot create a temp dir for dovecot")?;
        // Lets a later fixture tell an orphan (its test process was killed) from a live one.
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .context("cannot write the owner file")?;
        let mut server = DovecotServer {
            conf: dir.path().join("dovecot.conf"),
            dir,
            port: 0,
            tls_port: None,
            options,
            master_pid: None,
        };
        server.prepare_dirs().await?;
        if server.options.tls {
            server.make_certificates().await?;
        }
        // Dovecot cannot pick a free port itself: choose one, and choose again if another
        // process took it between our probe and Dovecot's bind (exit code 89).
        let mut last_error = None;
        for _ in 0..10 {
            server.port = free_port()?;
            server.tls_port = if server.options.tls {
                Some(free_port()?)
            } else {
                None
            };
            server.write_config()?;
            match server.run_master().await {
                Ok(()) => return Ok(server),
                Err(StartError::PortTaken) => {
                    last_error = Some(anyhow::anyhow!("port taken"));
                }
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no free port")))
            .context("dovecot could not bind a free loopback port after 10 tries")
    }

    /// Host to connect to (`127.0.0.1`).
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The plain (and STARTTLS) IMAP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, when started with [`DovecotBuilder::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The PEM file of the CA that signed the server certificate (TLS only).
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("ca.pem"))
    }

    /// The login name.
    pub fn user(&self) -> &str {
        &self.options.user
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.options.password
    }

    /// The server's private directory (config, log, mail).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Dovecot's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Delivers a message into `mailbox` (created if missing) with `doveadm save`; while
    /// the server is stopped, writes it straight into the Maildir's `new/` (doveadm needs
    /// the running auth service), where Dovecot finds it when it starts again.
    pub async fn append(&self, mailbox: &str, message: &[u8]) -> Result<()> {
        if self.master_pid.is_none() {
            return self.deliver_offline(mailbox, message).await;
        }
        self.ensure_mailbox(mailbox).await?;
        let mut child = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.conf)
            .args(["save", "-u", &self.options.user, "-m", mailbox])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run doveadm save")?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(message).await?;
            stdin.shutdown().await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "doveadm save into {mailbox} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    async fn deliver_offline(&self, mailbox: &str, message: &[u8]) -> Result<()> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut dir = self.dir.path().join("mail").join(&self.options.user);
        if !mailbox.eq_ignore_ascii_case("INBOX") {
            dir.push(format!(".{mailbox}"));
        }
        let (uid, gid) = mail_owner().await?;
        let mut created = Vec::new();
        for sub in ["", "new", "cur", "tmp"] {
            let d = dir.join(sub);
            if !d.exists() {
                std::fs::create_dir_all(&d)?;
                created.push(d);
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.plba-test",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join("new").join(name);
        std::fs::write(&path, message)?;
        created.push(path);
        for p in created {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// Creates `mailbox` unless it exists.
    pub async fn ensure_mailbox(&self, mailbox: &str) -> Result<()> {
        if mailbox.eq_ignore_ascii_case("INBOX")
            || self.mailboxes().await?.iter().any(|m| m == mailbox)
        {
            return Ok(());
        }
        self.doveadm(&["mailbox", "create", "-u", &self.options.user, mailbox])
            .await
            .map(drop)
    }

    /// Every mailbox of the user.
    pub async fn mailboxes(&self) -> Result<Vec<String>> {
        let out = self
            .doveadm(&["mailbox", "list", "-u", &self.options.user])
            .await?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The messages in `mailbox` with their flags, by UID; empty if the mailbox is missing.
    pub async fn messages(&self, mailbox: &str) -> Result<Vec<StoredMessage>> {
        if !self.mailboxes().await?.iter().any(|m| m == mailbox) {
            return Ok(Vec::new());
        }
        let out = self
            .doveadm(&[
                "fetch",
                "-u",
                &self.options.user,
                "uid flags",
                "mailbox",
                mailbox,
            ])
            .await?;
        Ok(parse_fetch(&out))
    }

    /// The flags of each message in `mailbox`, by UID order.
    pub async fn flags_of(&self, mailbox: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .messages(mailbox)
            .await?
            .into_iter()
            .map(|m| m.flags)
            .collect())
    }

    /// The mailbox's UIDVALIDITY.
    pub async fn uidvalidity(&self, mailbox: &str) -> Result<u32> {
        let out = self
            .doveadm(&[
                "mailbox",
                "status",
                "-u",
                &self.options.user,
                "uidvalidity",
                mailbox,
            ])
            .await?;
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("uidvalidity="))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no uidvalidity in doveadm output {out:?}"))
    }

    /// Disconnects every client of the user (`doveadm kick`); fine if none was connected.
    pub async fn kill_connections(&self) -> Result<()> {
        let out = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.conf)
            .args(["kick", &self.options.user])
            .output()
            .await
            .context("cannot run doveadm kick")?;
        // 68 = "no users kicked".
        match out.status.code() {
            Some(0) | Some(68) => Ok(()),
            _ => bail!(
                "doveadm kick failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }

    /// Stops the server (all connections drop) and starts it again on the same ports.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_again().await
    }

    /// Starts a server stopped with [`DovecotServer::stop`] again, same ports and mail.
    /// (Between the two, [`DovecotServer::append`] still works: it writes the Maildir.)
    pub async fn start_again(&mut self) -> Result<()> {
        if self.master_pid.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.run_master().await {
                Ok(()) => return Ok(()),
                // The old listener may linger for a moment.
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(StartError::PortTaken) => bail!("dovecot port {} stays taken", self.port),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        let Some(pid) = self.master_pid.take() else {
            return;
        };
        let group = format!("-{pid}");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && group_alive(pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if group_alive(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    async fn doveadm(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .await
            .with_context(|| format!("cannot run doveadm {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "doveadm {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn prepare_dirs(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let root = self.dir.path();
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Dovecot's unprivileged processes must reach the config and the mail dirs.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
        let (uid, gid) = mail_owner().await?;
        for sub in ["mail", "home"] {
            std::os::unix::fs::chown(root.join(sub), Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {sub} to {uid}:{gid}"))?;
        }
        std::fs::write(
            root.join("passwd"),
            format!(
                "{}:{{PLAIN}}{}::::::\n",
                self.options.user, self.options.password
            ),
        )?;
        Ok(())
    }

    async fn make_certificates(&self) -> Result<()> {
        let d = self.dir.path();
        let p = |f: &str| d.join(f).to_string_lossy().into_owned();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
        ca.extend([
            "-days",
            "2",
            "-subj",
            "/CN=plba-test-ca",
            "-keyout",
            &ca_key,
        ]);
        ca.extend(["-out", &ca_pem]);
        openssl(&ca).await?;
        let (key, csr) = (p("key.pem"), p("req.csr"));
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
        openssl(&req).await?;
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let (ext, cert) = (p("ext.cnf"), p("cert.pem"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ])
        .await
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path().display().to_string();
        let root = is_root();
        let (muid, mgid) = owner_ids_blocking(root)?;
        let internal = if root {
            "default_internal_user = dovecot\ndefault_login_user = dovenull\n".to_owned()
        } else {
            let (user, group) = (whoami("-un"), whoami("-gn"));
            format!(
                "default_internal_user = {user}\ndefault_login_user = {user}\ndefault_internal_group = {group}\n\
                 service imap-login {{\n  chroot =\n}}\nservice anvil {{\n  chroot =\n}}\n"
            )
        };
        let (ssl, imaps) = match self.tls_port {
            Some(tls_port) => (
                format!("ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n"),
                format!(
                    "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n"
                ),
            ),
            None => ("ssl = no\n".to_owned(), String::new()),
        };
        let caps: Vec<&str> = CAPABILITIES
            .iter()
            .copied()
            .filter(|c| (self.options.idle || *c != "IDLE") && (self.options.mv || *c != "MOVE"))
            .collect();
        let capability = if self.options.idle && self.options.mv {
            String::new()
        } else {
            format!("imap_capability = {}\n", caps.join(" "))
        };
        let port = self.port;
        let conf = format!(
            "instance_name = plba-dovecot-{port}
base_dir = {d}/run
state_dir = {d}/state
listen = 127.0.0.1
protocols = imap
log_path = {d}/dovecot.log
{internal}first_valid_uid = {muid}
last_valid_uid = {muid}
disable_plaintext_auth = no
auth_mechanisms = plain login
{ssl}mail_location = maildir:{d}/mail/%u
mail_fsync = never
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={muid} gid={mgid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
{imaps}}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"
        );
        std::fs::write(&self.conf, conf)?;
        Ok(())
    }

    async fn run_master(&mut self) -> Result<(), StartError> {
        // The daemon keeps the stdio it inherits: pipes would never reach EOF, so its
        // output goes to a file.
        let err_path = self.dir.path().join("start.err");
        let err_file = std::fs::File::create(&err_path).map_err(|e| {
            StartError::Other(anyhow::anyhow!("cannot create {}: {e}", err_path.display()))
        })?;
        let status = Command::new(DOVECOT)
            .arg("-c")
            .arg(&self.conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err_file)
            .status()
            .await
            .map_err(|e| StartError::Other(anyhow::anyhow!("cannot run {DOVECOT}: {e}")))?;
        match status.code() {
            Some(0) => {}
            Some(EXIT_PORT_TAKEN) => return Err(StartError::PortTaken),
            _ => {
                return Err(StartError::Other(anyhow::anyhow!(
                    "dovecot failed to start ({}): {}\nlog:\n{}",
                    status,
                    std::fs::read_to_string(&err_path)
                        .unwrap_or_default()
                        .trim(),
                    self.log()
                )));
            }
        }
        // Ready when the port accepts and the master has written its pid (in that order
        // or the other).
        let pid_file = self.dir.path().join("run/master.pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            let pid: Option<u32> = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let open = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            if let (Some(pid), true) = (pid, open) {
                break pid;
            }
            if Instant::now() > deadline {
                // Do not leak a half-started daemon.
                self.master_pid = pid;
                self.stop();
                return Err(StartError::Other(anyhow::anyhow!(
                    "dovecot did not open port {} (pid file: {pid:?}); log:\n{}",
                    self.port,
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.master_pid = Some(pid);
        Ok(())
    }
}

impl Drop for DovecotServer {
    fn drop(&mut self) {
        self.stop();
    }
}

enum StartError {
    PortTaken,
    Other(anyhow::Error),
}

/// Parses `doveadm fetch 'uid flags'` output: records separated by form feeds.
fn parse_fetch(out: &str) -> Vec<StoredMessage> {
    let mut messages = Vec::new();
    for record in out.split('\u{c}') {
        let mut uid = None;
        let mut flags = Vec::new();
        for line in record.lines() {
            if let Some(v) = line.strip_prefix("uid: ") {
                uid = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("flags:") {
                flags = v
                    .split_whitespace()
                    .filter(|f| *f != "\\Recent")
                    .map(str::to_owned)
                    .collect();
            }
        }
        if let Some(uid) = uid {
            messages.push(StoredMessage { uid, flags });
        }
    }
    messages.sort_by_key(|m| m.uid);
    messages
}

/// Stops the servers, and removes the dirs, of fixtures whose test process died without
/// dropping them (killed by a test runner's timeout, say), so they do not pile up on a CI
/// machine. A fixture counts as orphaned only when its owner process is gone; its master
/// is signalled only when that process still runs this fixture's own config.
fn reap_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_fixture = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        let pid_in = |file: &Path| -> Option<u32> {
            std::fs::read_to_string(file).ok()?.trim().parse().ok()
        };
        // No owner file yet: being created right now, or not ours; leave it.
        let Some(owner) = pid_in(&dir.join(OWNER_FILE)).filter(|_| is_fixture) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Some(master) = pid_in(&dir.join("run/master.pid")) {
            let conf = dir.join("dovecot.conf");
            let runs_this_conf = std::fs::read(format!("/proc/{master}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&*conf.to_string_lossy()))
                .unwrap_or(false);
            if runs_this_conf {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{master}")])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn group_alive(pid: u32) -> bool {
    // Zombies do not count: nobody may reap them in a container without an init.
    std::process::Command::new("ps")
        .args(["-o", "stat=", "-s", &pid.to_string()])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    whoami("-u") == "0"
}

fn whoami(flag: &str) -> String {
    std::process::Command::new("id")
        .arg(flag)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn owner_ids_blocking(root: bool) -> Result<(u32, u32)> {
    let run = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .with_context(|| format!("cannot run {}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if root {
        let uid = run(&["id", "-u", "nobody"])?;
        let group = run(&["getent", "group", "nogroup"])?;
        let gid = group.split(':').nth(2).unwrap_or("65534").to_owned();
        Ok((
            uid.parse().context("uid of nobody")?,
            gid.parse().context("gid of nogroup")?,
        ))
    } else {
        Ok((
            run(&["id", "-u"])?.parse().context("own uid")?,
            run(&["id", "-g"])?.parse().context("own gid")?,
        ))
    }
}

async fn mail_owner() -> Result<(u32, u32)> {
    let root = is_root();
    tokio::task::spawn_blocking(move || owner_ids_blocking(root)).await?
}

async fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .await
        .context("cannot run openssl (install it with `apt-get install -y openssl`)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A fixture whose owner died is stopped and removed when the next one starts; a
    /// live one is left alone.
    #[tokio::test]
    async fn the_next_fixture_reaps_an_orphaned_server() {
        let mut orphan = DovecotServer::start().await.unwrap();
        let live = DovecotServer::start().await.unwrap();
        let master = orphan.master_pid.unwrap();
        // Make its owner a process that has ended.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        std::fs::write(orphan.dir().join(OWNER_FILE), gone.id().to_string()).unwrap();

        let _next = DovecotServer::start().await.unwrap();

        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(master) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!group_alive(master), "the orphan's dovecot still runs");
        assert!(!orphan.dir().exists(), "the orphan's dir is still there");
        assert!(live.dir().exists() && group_alive(live.master_pid.unwrap()));
        orphan.master_pid = None; // Already stopped; nothing for drop to do.
    }

    #[test]
    fn doveadm_fetch_output_is_parsed() {
        let out = "uid: 1\nflags: \\Seen $OrderBotFailed\n\u{c}\nuid: 2\nflags: \\Recent\n";
        let m = parse_fetch(out);
        assert_eq!(m.len(), 2);
        assert!(m[0].has("\\Seen") && m[0].has("$OrderBotFailed"));
        assert!(m[1].flags.is_empty());
    }
}
