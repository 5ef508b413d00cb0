//! The typed-job round trip of `docs/writing-an-app.md` ("Depending on plba from another
//! repository"), worker and producer in one program sharing Redis:
//! `cargo run -p hello-tasks --example thumbnails` runs the worker,
//! `cargo run -p hello-tasks --example thumbnails -- add a.png` enqueues a job.

use std::sync::Arc;

use async_trait::async_trait;
use runtime_compose::client::Client;
use runtime_contracts::{
    ApplicationModule, Job, JobHandler, ModuleContext, ModuleError, PoolSpec, Router, Task,
    TaskContext, TaskError,
};
use runtime_core::PlatformConfig;
use runtime_core::cli::{AppConfigSpec, ConfigArgs, load_config};
use serde::{Deserialize, Serialize};

/// On the queue: route "thumbnail", payload {"image":"a.png","width":128}.
#[derive(Serialize, Deserialize)]
struct Thumbnail {
    image: String,
    width: u32,
}

impl Job for Thumbnail {
    const ROUTE: &'static str = "thumbnail";
}

struct Thumbnailer;

#[async_trait]
impl JobHandler<Thumbnail> for Thumbnailer {
    async fn handle(
        &self,
        job: Thumbnail,
        task: &Task,
        _: &TaskContext<'_>,
    ) -> Result<(), TaskError> {
        if job.width == 0 {
            return Err(TaskError::reject("width must be above zero")); // never retried
        }
        println!(
            "{} at {}px (task {}, attempt {})",
            job.image,
            job.width,
            task.id,
            task.attempts + 1
        );
        Ok(())
    }
}

struct Thumbnails;

#[async_trait]
impl ApplicationModule for Thumbnails {
    fn name(&self) -> &str {
        "thumbnails"
    }

    async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError> {
        let platform = PlatformConfig::from_snapshot(ctx.config())?;
        ctx.add_pool(PoolSpec {
            name: "thumbnails".to_owned(),
            queue: platform.queue.name.clone(),
            handler: Arc::new(Router::new().job::<Thumbnail>(Thumbnailer)?),
            concurrency: platform.workers.concurrency,
            task_timeout: platform.workers.task_timeout,
        });
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let spec = AppConfigSpec::new("thumbnails", "THUMBS_", "[queue]\nbackend = \"redis\"\n")
        .validator(runtime_compose::validator("thumbnails"));
    let config = Arc::new(load_config(&spec, &ConfigArgs::default()).await?);
    let args: Vec<String> = std::env::args().collect();
    if let [_, add, image] = args.as_slice()
        && add == "add"
    {
        let client = Client::from_config(&config.current(), "thumbnails")?;
        let job = Thumbnail {
            image: image.clone(),
            width: 128,
        };
        println!("enqueued {}", client.enqueue(&job).await?.id);
        return Ok(());
    }
    let plan = runtime_compose::plan(&config.current(), "thumbnails")?;
    let runtime = runtime_core::RuntimeManager::builder(config)
        .queue(plan.build_queue()?)
        .module(Arc::new(Thumbnails))
        .build();
    runtime.run().await?;
    Ok(())
}
