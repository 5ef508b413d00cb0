//! `[[schedules]]` -> scheduled sources, behind the leader lease when the queue is shared.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtime_adapters_schedule::{
    SECTION, ScheduleSettings, ScheduleSpec, ScheduledSource, SourceOptions,
};
use runtime_contracts::{
    ApplicationModule, ConfigIssue, ConfigSnapshot, ModuleContext, ModuleError, TaskSource,
};
use serde_json::Value;

use crate::Plan;

/// How long a schedule's leader lease lasts: a dead leader's schedules move to another
/// instance sharing the queue within about 1.4 x this.
pub const SCHEDULE_LEADER_LEASE: Duration = Duration::from_secs(15);

/// Reads and checks every `[[schedules]]` entry; problems are keyed `schedules[i].key`.
pub(crate) fn plan_schedules(
    snapshot: &ConfigSnapshot,
    issues: &mut Vec<ConfigIssue>,
) -> Vec<ScheduleSpec> {
    let origin = runtime_core::config::lookup_origin(snapshot, SECTION);
    let mut found = Vec::new();
    let mut more = Vec::new();
    let entries = match snapshot.get(SECTION) {
        None => return found,
        Some(Value::Array(entries)) => entries.clone(),
        Some(_) => {
            issues.push(runtime_core::config::issue(
                snapshot,
                SECTION,
                "expected [[schedules]] tables (an array of tables)",
            ));
            return found;
        }
    };
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let prefix = format!("{SECTION}[{i}]");
        // Read each entry as a section of its own, so a bad type or unknown key is named
        // exactly (`schedules[0].cron`), as the platform's sections are.
        let one = ConfigSnapshot {
            version: snapshot.version,
            tree: serde_json::json!({ "entry": entry }),
            origins: BTreeMap::new(),
        };
        let settings = match runtime_core::config::section::<ScheduleSettings>(&one, "entry") {
            Ok(settings) => settings,
            Err(runtime_contracts::ConfigError::Invalid(bad)) => {
                more.extend(bad.into_iter().map(|mut issue| {
                    issue.key = issue.key.replacen("entry", &prefix, 1);
                    issue.message = issue.message.replace("entry", &prefix);
                    issue
                }));
                continue;
            }
            Err(other) => {
                more.push(ConfigIssue::new(prefix, None, other.to_string()));
                continue;
            }
        };
        // Names are unique even among entries that have other problems.
        if let Some(first) = names.insert(settings.name.clone(), i) {
            more.push(ConfigIssue {
                key: format!("{prefix}.name"),
                origin: None,
                value: Some(format!("{:?}", settings.name)),
                message: format!("duplicate name: schedules[{first}] has it already"),
            });
            continue;
        }
        match settings.spec(&prefix) {
            Ok(spec) => found.push(spec),
            Err(bad) => more.extend(bad),
        }
    }
    for mut issue in more {
        if issue.origin.is_none() {
            issue.origin = origin.clone();
        }
        issues.push(issue);
    }
    found
}

/// The application module that runs the configured schedules: one *exclusive* source
/// each, into the platform queue, so of the processes sharing the queue only the holder
/// of the queue's leader lease `source:<name>` ticks
/// ([`ModuleContext::add_exclusive_source`]). The app's own handler sees the tasks by route.
pub struct ScheduleModule {
    sources: Vec<Arc<dyn TaskSource>>,
    queue: String,
}

impl std::fmt::Debug for ScheduleModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleModule")
            .field("schedules", &self.sources.len())
            .field("queue", &self.queue)
            .finish()
    }
}

impl ScheduleModule {
    /// The sources it registers.
    pub fn sources(&self) -> &[Arc<dyn TaskSource>] {
        &self.sources
    }
}

#[async_trait]
impl ApplicationModule for ScheduleModule {
    fn name(&self) -> &str {
        "schedules"
    }

    async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError> {
        for source in &self.sources {
            ctx.add_exclusive_source(source.clone(), self.queue.clone(), SCHEDULE_LEADER_LEASE);
        }
        Ok(())
    }
}

impl Plan {
    /// The module running `[[schedules]]`, publishing into `queue_name`, checkpoints in
    /// `state_dir` (`runtime.state_dir`); `None` when there are no schedules.
    pub fn schedule_module(
        &self,
        queue_name: &str,
        state_dir: &Path,
    ) -> Option<Arc<ScheduleModule>> {
        if self.schedules.is_empty() {
            return None;
        }
        // The memory queue loses its tasks with the process: a tick not seen finished is
        // published again at start. A durable queue still holds it.
        #[cfg(feature = "memory")]
        let redeliver_unfinished = self.queue.backend()
            == <runtime_adapters_memory::MemoryQueueSettings as runtime_contracts::QueueBackendSettings>::BACKEND;
        #[cfg(not(feature = "memory"))]
        let redeliver_unfinished = false;
        let options = SourceOptions {
            state_dir: state_dir.to_owned(),
            redeliver_unfinished,
        };
        let sources = self
            .schedules
            .iter()
            .map(|spec| {
                Arc::new(ScheduledSource::new(spec.clone(), options.clone())) as Arc<dyn TaskSource>
            })
            .collect();
        Some(Arc::new(ScheduleModule {
            sources,
            queue: queue_name.to_owned(),
        }))
    }
}
