//! # runtime-adapters-config
//!
//! Configuration layers that need infrastructure, as `runtime-contracts`
//! [`ConfigProvider`](runtime_contracts::ConfigProvider)s:
//!
//! * [`FileProvider`] — a TOML or YAML file. Every leaf remembers the line of its key
//!   (TOML through `toml`'s spanned parser, YAML from indentation), so an error reads
//!   `bot.toml:12`. Syntax errors give line and column but never an excerpt of the file,
//!   which could hold a secret.
//! * [`DatabaseProvider`] — a key/value table in PostgreSQL or SQLite (sqlx). Rows are
//!   dotted keys with TOML values (`workers.concurrency` = `8`); bare text is a string.
//!   The layer is configured by `[config_db]` in files or the environment, so the
//!   command line reads those first and then asks [`DatabaseProvider::from_bootstrap`].
//!
//! The key decision: this crate knows nothing of the core. It produces layers; the core
//! merges (defaults < files < database < environment), validates and reloads them. The
//! app wires both: `AppConfigSpec::file_loader(FileProvider::boxed)` and
//! `.layer(CONFIG_DB_SECTION, DatabaseProvider::from_bootstrap)`.

mod database;
mod file;
mod value;

pub use database::{CONFIG_DB_SECTION, ConfigDbSettings, DEFAULT_TABLE, DatabaseProvider};
pub use file::{FileFormat, FileProvider};
pub use value::{parse_value, redact_url, toml_to_json};
