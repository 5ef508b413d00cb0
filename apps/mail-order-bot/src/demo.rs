//! `mail-order-bot demo`: the real pipeline on a fresh machine, no server needed.
//!
//! The configuration is the embedded defaults plus a demo layer (Maildir
//! `./var/maildir`, SQLite `./var/orders.db`, the memory queue, the shipped sample
//! catalog), with `MOB_*` variables still on top. The shipped sample emails are delivered
//! into `./var/maildir/new` the Maildir way (`tmp/` then rename), each under a fixed
//! unique name and only when neither the Maildir holds it nor the store has its order,
//! so running the demo again adds nothing twice. It waits, on the module's progress
//! counter (no polling), until every pending sample has its order, prints the orders,
//! then keeps watching the Maildir and prints each new order until Ctrl-C.
//!
//! The demo talks to a person on stdout; its logs (stderr) default to warnings only so
//! they do not drown the progress lines (`MOB_TRACING__LEVEL` or `RUST_LOG` turn them
//! up).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtime_adapters_maildir::Maildir;
use runtime_contracts::{ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider};
use runtime_core::config::{DefaultsProvider, EnvProvider, known_sections_validator};
use runtime_core::{ConfigurationManager, RuntimeError};
use serde_json::json;
use tracing::info;

use crate::app::{AppError, ComposeOptions, compose, init_logging};
use crate::config::{APP_SECTIONS, DEFAULTS_TOML, ENV_PREFIX, MailConfig, validators};
use crate::domain::{Catalog, process_message};
use crate::report::render_table;
use crate::store::{OrderStore, StoredOrder};

/// The shipped sample catalog.
pub const SAMPLE_CATALOG: &str = include_str!("../samples/catalog.csv");

/// The shipped sample emails: (unique name in the Maildir, bytes).
pub const SAMPLES: [(&str, &[u8]); 7] = [
    (
        "mob-sample-01-accepted-plain",
        include_bytes!("../samples/01-accepted-plain.eml"),
    ),
    (
        "mob-sample-02-accepted-html",
        include_bytes!("../samples/02-accepted-html.eml"),
    ),
    (
        "mob-sample-03-accepted-csv-attachment",
        include_bytes!("../samples/03-accepted-csv-attachment.eml"),
    ),
    (
        "mob-sample-04-accepted-utf8",
        include_bytes!("../samples/04-accepted-utf8.eml"),
    ),
    (
        "mob-sample-05-rejected-unknown-sku",
        include_bytes!("../samples/05-rejected-unknown-sku.eml"),
    ),
    (
        "mob-sample-06-rejected-bad-quantity",
        include_bytes!("../samples/06-rejected-bad-quantity.eml"),
    ),
    (
        "mob-sample-07-rejected-no-order-lines",
        include_bytes!("../samples/07-rejected-no-order-lines.eml"),
    ),
];

/// The demo's log level (`tracing.level`): warnings only, see the module docs.
const DEMO_LOG_LEVEL: &str = "warn";

/// How long the demo waits for the samples before printing what it has.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(60);

/// The demo's configuration layer, placed above the embedded defaults.
struct DemoLayer {
    tree: serde_json::Value,
}

#[async_trait::async_trait]
impl ConfigProvider for DemoLayer {
    fn describe(&self) -> String {
        "demo settings".to_owned()
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        Ok(ConfigLayer::from_tree(
            "demo settings",
            &self.tree,
            &ConfigOrigin::Other("demo settings".to_owned()),
        ))
    }
}

/// The demo's configuration: defaults < demo layer (under `dir`) < `MOB_*`.
pub async fn demo_config(dir: &Path) -> Result<ConfigurationManager, AppError> {
    let catalog = Catalog::from_csv_str(SAMPLE_CATALOG, "samples/catalog.csv")
        .map_err(|e| AppError::setup(format!("the sample catalog is broken: {e}")))?;
    let tree = json!({
        "mail": {
            "source": "maildir",
            "maildir": dir.join("maildir"),
            "poll_interval": "5s",
        },
        "orders": {
            "database_url": format!("sqlite://{}", dir.join("orders.db").display()),
            "catalog_file": "",
            "catalog": catalog.items(),
        },
        "queue": { "backend": "memory" },
        "tracing": { "level": DEMO_LOG_LEVEL },
    });
    let providers: Vec<Box<dyn ConfigProvider>> = vec![
        Box::new(DefaultsProvider::new(DEFAULTS_TOML)),
        Box::new(DemoLayer { tree }),
        Box::new(EnvProvider::new(ENV_PREFIX)),
    ];
    let mut checks = validators();
    checks.push(known_sections_validator(
        APP_SECTIONS.iter().map(|s| (*s).to_owned()).collect(),
    ));
    Ok(ConfigurationManager::load(providers, checks).await?)
}

/// Delivers the samples not processed yet; returns the message identities the demo
/// must wait for (samples waiting in the Maildir without an order).
pub async fn seed(
    maildir: &Path,
    store: &OrderStore,
    catalog: &Catalog,
    max_message_bytes: u64,
) -> Result<(BTreeSet<String>, usize), AppError> {
    let root = Maildir::new(maildir);
    let io = |context: String| move |source| AppError::Io { context, source };
    root.create().map_err(io(format!(
        "cannot create the Maildir {}",
        maildir.display()
    )))?;
    let mut expected = BTreeSet::new();
    let mut delivered = 0;
    for (unique, bytes) in SAMPLES {
        let identity = process_message(bytes, catalog, max_message_bytes, None).message_id;
        if store.find(&identity).await?.is_some() {
            continue;
        }
        let found = root
            .find(unique)
            .map_err(io(format!("cannot list the Maildir {}", maildir.display())))?;
        match found {
            Some(file) if file.is_new || !file.flags.contains(['S', 'T', 'F']) => {
                expected.insert(identity);
            }
            // Filed already (its order was deleted since): leave it alone.
            Some(_) => {}
            None => {
                let tmp = maildir.join("tmp").join(unique);
                let new = maildir.join("new").join(unique);
                std::fs::write(&tmp, bytes)
                    .and_then(|()| std::fs::rename(&tmp, &new))
                    .map_err(io(format!("cannot deliver {}", new.display())))?;
                delivered += 1;
                expected.insert(identity);
            }
        }
    }
    Ok((expected, delivered))
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `mail-order-bot demo` in `./var`.
pub async fn demo() -> Result<(), AppError> {
    demo_in(PathBuf::from("./var")).await
}

/// The demo with its files under `dir`.
pub async fn demo_in(dir: PathBuf) -> Result<(), AppError> {
    let config = Arc::new(demo_config(&dir).await?);
    init_logging(&config.platform())?;
    let snapshot = config.current();
    let mail = MailConfig::from_snapshot(&snapshot)?;
    let orders = crate::config::OrdersConfig::from_snapshot(&snapshot)?;
    let catalog = orders
        .load_catalog()
        .map_err(|p| AppError::setup(p.message))?;

    say(&format!(
        "mail-order-bot demo: Maildir {}, orders in {} (logs: tracing.level = {:?}; \
         MOB_TRACING__LEVEL=info shows more)\n",
        mail.maildir.display(),
        orders.database_url,
        config.platform().tracing.level,
    ));
    let store = OrderStore::connect(&orders.database_url).await?;
    let (expected, delivered) =
        seed(&mail.maildir, &store, &catalog, mail.max_message_bytes()).await?;
    say(&format!(
        "seeded {delivered} sample email(s) into {}; {} waiting to be processed, {} already done\n",
        mail.maildir.join("new").display(),
        expected.len(),
        SAMPLES.len() - expected.len(),
    ));

    let composed = compose(
        config.clone(),
        &ComposeOptions {
            handle_signals: true,
            control_port_fallback: true,
        },
    )
    .await?;
    let runtime = composed.runtime;
    let mut progress = composed.module.finished();
    if let Err(error) = runtime.start().await {
        runtime.stop().await;
        return Err(error.into());
    }
    if let Some(addr) = composed.control_addr {
        if let Some(wanted) = composed.control_fallback_from {
            say(&format!(
                "{wanted} is taken; the control plane listens on a free port instead\n"
            ));
        }
        say(&format!(
            "control plane: http://{addr}  (try /status, /health, /metrics)\n"
        ));
    }

    let shutdown = runtime.wait_for_shutdown_request();
    tokio::pin!(shutdown);
    let mut interrupted = false;

    // Wait until every waiting sample has its order, woken by each finished task.
    let deadline = tokio::time::Instant::now() + SAMPLE_DEADLINE;
    let mut last_done = usize::MAX;
    loop {
        let mut done = 0;
        for id in &expected {
            if store.find(id).await?.is_some() {
                done += 1;
            }
        }
        if done != last_done && !expected.is_empty() {
            say(&format!(
                "processed {done}/{} sample email(s)\n",
                expected.len()
            ));
            last_done = done;
        }
        if done == expected.len() {
            break;
        }
        tokio::select! {
            _ = progress.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                say("some samples are still not processed; showing what is stored\n");
                break;
            }
            _ = &mut shutdown => { interrupted = true; break; }
        }
    }

    let all = store.list().await?;
    say(&format!("\norders in {}:\n", orders.database_url));
    say(&render_table(&all));
    let mut shown = all.last().map_or(0, |o| o.id);

    if !interrupted {
        // A Maildir delivery is a rename: a file copied straight into new/ can be read
        // while it is still being written.
        say(&format!(
            "\nwatching {new} for new order emails; Ctrl-C to stop\n\
             deliver one the Maildir way: cp order.eml {tmp}/ && mv {tmp}/order.eml {new}/\n",
            new = mail.maildir.join("new").display(),
            tmp = mail.maildir.join("tmp").display(),
        ));
        loop {
            tokio::select! {
                changed = progress.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let fresh: Vec<StoredOrder> = store
                        .list()
                        .await?
                        .into_iter()
                        .filter(|o| o.id > shown)
                        .collect();
                    if let Some(last) = fresh.last() {
                        shown = last.id;
                        say(&format!("\nnew order(s):\n{}", render_table(&fresh)));
                    }
                }
                _ = &mut shutdown => break,
            }
        }
    }

    info!("demo stopping");
    say("stopping...\n");
    tokio::select! {
        biased;
        _ = runtime.interrupted() => return Err(RuntimeError::Interrupted.into()),
        _ = runtime.stop() => {}
    }
    store.close().await;
    say("stopped\n");
    Ok(())
}
