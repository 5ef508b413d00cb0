//! Filing a message once its task's outcome is final.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runtime_contracts::{FinalOutcome, SourceAcknowledger, SourceError};
use tracing::{debug, warn};

use crate::REJECTED_TAG;
use crate::config::MaildirConfig;
use crate::maildir::{Maildir, is_valid_key};

/// Keys whose dead letter could not be recorded on disk, with the reason: shared with
/// the source, which then reports them as failed instead of producing them again.
pub(crate) type Refusals = Arc<Mutex<HashMap<String, String>>>;

/// Files messages by their unique name: works in any process that sees the same
/// directory, from the task's origin key alone.
#[derive(Clone, Debug)]
pub struct MaildirAcknowledger {
    config: Arc<MaildirConfig>,
    refusals: Option<Refusals>,
}

impl MaildirAcknowledger {
    /// An acknowledger for the Maildir of `config`.
    pub fn new(config: Arc<MaildirConfig>) -> Self {
        MaildirAcknowledger {
            config,
            refusals: None,
        }
    }

    /// One that tells its source which dead letters it could not file.
    pub(crate) fn with_refusals(config: Arc<MaildirConfig>, refusals: Refusals) -> Self {
        MaildirAcknowledger {
            config,
            refusals: Some(refusals),
        }
    }

    fn refuse(&self, key: &str, outcome: &FinalOutcome, reason: String) -> SourceError {
        warn!(key, %reason, "maildir message cannot be filed");
        if matches!(outcome, FinalOutcome::DeadLettered { .. })
            && let Some(refusals) = &self.refusals
        {
            refusals
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(key.to_owned(), reason.clone());
        }
        SourceError::Permanent(reason)
    }
}

/// Applies `outcome` to the message `unique`; returns where it is now (`None` when it is
/// nowhere: deleted by someone, nothing left to do).
pub(crate) fn file_message(
    config: &MaildirConfig,
    unique: &str,
    outcome: &FinalOutcome,
) -> std::io::Result<Option<PathBuf>> {
    let root = Maildir::new(&config.path);
    let folder = |name: &str| root.folder(name).unwrap_or_else(|| root.clone());
    let (target, add, remove) = match outcome {
        FinalOutcome::Succeeded { tag } if tag.as_deref() == Some(REJECTED_TAG) => {
            let name = if config.rejected_folder.is_empty() {
                &config.processed_folder
            } else {
                &config.rejected_folder
            };
            (folder(name), "S", "F")
        }
        FinalOutcome::Succeeded { .. } => (folder(&config.processed_folder), "S", "F"),
        FinalOutcome::DeadLettered { .. } => (folder(&config.failed_folder), "F", ""),
    };
    // Where can it be? Here, or in any folder an earlier outcome put it (an operator's
    // retry of a dead letter finds it in the failed folder).
    let mut places = vec![root.clone()];
    for name in [
        &config.processed_folder,
        &config.rejected_folder,
        &config.failed_folder,
    ] {
        if let Some(f) = root.folder(name)
            && !places.contains(&f)
        {
            places.push(f);
        }
    }
    // The target first: if it is already there with the right flags, nothing to do.
    places.sort_by_key(|p| *p != target);
    for place in &places {
        // A concurrent acknowledger may move the file between list and rename: look again.
        for _ in 0..3 {
            let Some(file) = place.find(unique)? else {
                break;
            };
            let done = *place == target
                && !file.is_new
                && add.chars().all(|c| file.flags.contains(c))
                && !remove.chars().any(|c| file.flags.contains(c));
            if done {
                return Ok(Some(file.path));
            }
            match target.file_into(&file, add, remove) {
                Ok(path) => return Ok(Some(path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

#[async_trait]
impl SourceAcknowledger for MaildirAcknowledger {
    async fn acknowledge(&self, key: &str, outcome: &FinalOutcome) -> Result<(), SourceError> {
        if !is_valid_key(key) {
            return Err(self.refuse(key, outcome, format!("invalid maildir key {key:?}")));
        }
        let config = Arc::clone(&self.config);
        let unique = key.to_owned();
        let outcome_owned = outcome.clone();
        let result =
            tokio::task::spawn_blocking(move || file_message(&config, &unique, &outcome_owned))
                .await
                .map_err(|e| {
                    SourceError::unavailable("maildir acknowledgement did not finish", e)
                })?;
        match result {
            Ok(Some(path)) => {
                debug!(key, path = %path.display(), "maildir message filed");
                Ok(())
            }
            Ok(None) => {
                warn!(key, "maildir message to acknowledge is gone");
                Ok(())
            }
            // The file system will never take the new name (too long, say).
            Err(error) if error.kind() == std::io::ErrorKind::InvalidFilename => Err(self.refuse(
                key,
                outcome,
                format!("cannot file maildir message {key}: {error}"),
            )),
            Err(error) => Err(SourceError::unavailable(
                format!("cannot file maildir message {key}"),
                error,
            )),
        }
    }
}
