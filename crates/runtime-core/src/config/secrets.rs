//! `password_file` / `token_file`: secrets read from files (Docker and Kubernetes
//! secrets, systemd credentials).
//!
//! Within each layer, a key `X_file` whose `X` names a secret (`password`, `token`, ...)
//! is replaced by `X` holding the file's content, trailing newline trimmed. Doing it per
//! layer keeps precedence intact: `MOB_MAIL__PASSWORD` in the environment still beats
//! `password_file` in a file. Apps declare only `password: Secret` in their sections.

use std::path::PathBuf;

use runtime_contracts::{ConfigIssue, ConfigLayer, ConfigOrigin, is_secret_key};
use serde_json::Value;

/// The reader is the contracts' one, shared with the adapters that read their own
/// secret files (a regular file of at most `MAX_SECRET_FILE_BYTES`).
pub use runtime_contracts::read_secret_file;

/// Replaces `X_file` keys of secrets by `X` with the file's content. Returns the files
/// read (to watch them) and the problems found.
pub(crate) async fn expand_secret_files(
    layer: &mut ConfigLayer,
) -> (Vec<PathBuf>, Vec<ConfigIssue>) {
    let mut files = Vec::new();
    let mut issues = Vec::new();
    let file_keys: Vec<String> = layer
        .entries
        .keys()
        .filter(|k| k.strip_suffix("_file").is_some_and(is_secret_key))
        .cloned()
        .collect();
    for key in file_keys {
        let Some(entry) = layer.entries.remove(&key) else {
            continue;
        };
        let stem = key.trim_end_matches("_file").to_owned();
        let bad = |message: String, value: Option<String>| ConfigIssue {
            key: key.clone(),
            origin: Some(entry.origin.clone()),
            value,
            message,
        };
        let Value::String(path) = &entry.value else {
            issues.push(bad("expected a file path (a string)".to_owned(), None));
            continue;
        };
        if layer.entries.contains_key(&stem) {
            issues.push(bad(
                format!("set either `{stem}` or `{key}`, not both"),
                Some(format!("{path:?}")),
            ));
            continue;
        }
        let path_buf = PathBuf::from(path);
        files.push(path_buf.clone());
        let read = {
            let p = path_buf.clone();
            tokio::task::spawn_blocking(move || read_secret_file(&p)).await
        };
        match read {
            Ok(Ok(secret)) if secret.is_empty() => issues.push(bad(
                "the secret file is empty".to_owned(),
                Some(format!("{path:?}")),
            )),
            Ok(Ok(secret)) => {
                let origin = ConfigOrigin::Other(format!(
                    "secret file {} named by {key} ({})",
                    path_buf.display(),
                    entry.origin
                ));
                layer.set(stem, Value::String(secret.expose().to_owned()), origin);
            }
            Ok(Err(e)) => issues.push(bad(
                format!("cannot read the secret file: {e}"),
                Some(format!("{path:?}")),
            )),
            Err(e) => issues.push(bad(format!("cannot read the secret file: {e}"), None)),
        }
    }
    (files, issues)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use runtime_contracts::MAX_SECRET_FILE_BYTES as MAX_SECRET_FILE;

    use super::*;

    #[test]
    fn secret_files_are_regular_and_small() {
        assert!(read_secret_file(Path::new("/dev/zero")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let e = read_secret_file(&big).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("larger than")));
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "pw\n").unwrap();
        assert_eq!(read_secret_file(&ok).unwrap().expose(), "pw");
    }

    /// Opening a FIFO blocks until a writer comes: it used to hang start-up for ever.
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secret");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils)");
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(
                read_secret_file(&fifo)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        });
        let answer = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO as a secret file hung");
        assert!(answer.is_err_and(|e| e.contains("not a regular file")));
    }
}
