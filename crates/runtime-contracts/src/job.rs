//! Typed jobs: a serde payload type with its route name, and a [`Router`] that dispatches
//! the tasks of one pool by [`Task::route`] to typed handlers.
//!
//! ## The encoding (stable, for producers in any language)
//!
//! A job of type `J` travels as a plain [`Task`]: `route` is [`Job::ROUTE`] and `payload`
//! is the job serialized as JSON (UTF-8, `serde_json`'s compact form). Nothing else is
//! added: no type tag, no envelope, no header. A producer that is not written in Rust
//! enqueues a job by giving `route` and the JSON text of the payload (for example through
//! `POST /admin/queues/{queue}/tasks`, whose `payload` is that JSON). Decoding is
//! `serde_json::from_slice`, so the sequence of fields and whitespace do not matter; whether unknown
//! fields are refused is the job type's choice (`#[serde(deny_unknown_fields)]`).
//!
//! ## Refusals are for good
//!
//! A task whose route no handler claims, or whose payload does not decode as the route's
//! type, can never succeed however often it is tried: the router answers
//! [`TaskError::Reject`] and the worker dead-letters it at once, with a reason that names
//! the route (and the serde error), never retrying it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ModuleError;
use crate::handler::{TaskContext, TaskError, TaskHandler};
use crate::task::Task;

/// A typed job: a serde payload with the route its tasks carry.
///
/// ```
/// use runtime_contracts::{Job, Task};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize {
///     image: String,
///     width: u32,
/// }
///
/// impl Job for Resize {
///     const ROUTE: &'static str = "resize";
/// }
///
/// let task = Task::from_job(&Resize { image: "a.png".into(), width: 64 }).unwrap();
/// assert_eq!(task.route, "resize");
/// assert_eq!(task.payload, br#"{"image":"a.png","width":64}"#);
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The route of this job's tasks; unique among the jobs one pool handles.
    const ROUTE: &'static str;
}

/// A job could not be serialized (a map with non-string keys, a `Serialize` impl that
/// fails); plain structs of strings and numbers never fail.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a job for route {route:?}: {source}")]
pub struct EncodeError {
    /// The job's route.
    pub route: &'static str,
    /// What serde said.
    #[source]
    pub source: serde_json::Error,
}

impl Task {
    /// A new task carrying `job`: route [`Job::ROUTE`], payload the job's JSON.
    ///
    /// # Errors
    /// [`EncodeError`] when the job does not serialize.
    pub fn from_job<J: Job>(job: &J) -> Result<Task, EncodeError> {
        let payload = serde_json::to_vec(job).map_err(|source| EncodeError {
            route: J::ROUTE,
            source,
        })?;
        Ok(Task::new(J::ROUTE, payload))
    }

    /// Decodes this task's payload as the job `J`.
    ///
    /// # Errors
    /// [`TaskError::Reject`] naming the route and the serde error when the route is not
    /// `J`'s or the payload does not decode: no retry can fix either.
    pub fn decode_job<J: Job>(&self) -> Result<J, TaskError> {
        if self.route != J::ROUTE {
            return Err(TaskError::reject(format!(
                "route {:?} is not the route {:?} of {}",
                self.route,
                J::ROUTE,
                std::any::type_name::<J>()
            )));
        }
        serde_json::from_slice(&self.payload).map_err(|error| {
            TaskError::reject(format!(
                "payload of route {:?} does not decode as {}: {error}",
                J::ROUTE,
                std::any::type_name::<J>()
            ))
        })
    }
}

/// Handles the decoded jobs of one type. Like every handler it must be idempotent: a
/// job can run again after a crash or a lost lease.
#[async_trait]
pub trait JobHandler<J: Job>: Send + Sync + 'static {
    /// Handles one job; `task` is its envelope (id, attempts, headers), `ctx` the same
    /// context a [`TaskHandler`] gets.
    async fn handle(&self, job: J, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError>;
}

#[async_trait]
impl<J: Job, H: JobHandler<J> + ?Sized> JobHandler<J> for Arc<H> {
    async fn handle(&self, job: J, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        (**self).handle(job, task, ctx).await
    }
}

/// A [`JobHandler`] seen as a [`TaskHandler`]: decodes, then hands the job over.
struct Typed<J, H> {
    handler: H,
    // `fn() -> J`: the adapter holds no `J`, so it is `Send + Sync` whatever `J` is.
    job: PhantomData<fn() -> J>,
}

#[async_trait]
impl<J: Job, H: JobHandler<J>> TaskHandler for Typed<J, H> {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        let job = task.decode_job::<J>()?;
        self.handler.handle(job, task, ctx).await
    }
}

/// A route was given two handlers, or an empty name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Two handlers for one route: which one should run is not clear.
    #[error("route {0:?} has two handlers")]
    Duplicate(String),
    /// A route must have a name.
    #[error("a route name must not be empty")]
    Empty,
}

impl From<RouteError> for ModuleError {
    fn from(error: RouteError) -> ModuleError {
        ModuleError::setup("cannot build the job router", error)
    }
}

/// Dispatches a pool's tasks by route. It is a [`TaskHandler`], so it goes where any
/// handler goes ([`PoolSpec::handler`](crate::PoolSpec)).
///
/// ```
/// # use runtime_contracts::{Job, JobHandler, Router, Task, TaskContext, TaskError};
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Ping {}
/// impl Job for Ping {
///     const ROUTE: &'static str = "ping";
/// }
///
/// struct Pong;
/// #[async_trait::async_trait]
/// impl JobHandler<Ping> for Pong {
///     async fn handle(&self, _: Ping, _: &Task, _: &TaskContext<'_>) -> Result<(), TaskError> {
///         Ok(())
///     }
/// }
///
/// let router = Router::new().job::<Ping>(Pong)?;
/// assert_eq!(router.routes(), ["ping"]);
/// # Ok::<(), runtime_contracts::RouteError>(())
/// ```
#[derive(Default)]
pub struct Router {
    routes: HashMap<Cow<'static, str>, Arc<dyn TaskHandler>>,
}

impl Router {
    /// A router without routes (every task is refused as an unknown route).
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes tasks of [`Job::ROUTE`] to `handler`, decoded as `J`.
    ///
    /// # Errors
    /// [`RouteError::Duplicate`] when the route has a handler already.
    pub fn job<J: Job>(self, handler: impl JobHandler<J>) -> Result<Router, RouteError> {
        self.task(
            J::ROUTE,
            Arc::new(Typed {
                handler,
                job: PhantomData::<fn() -> J>,
            }),
        )
    }

    /// Routes tasks of `route` to an untyped handler (raw payload bytes).
    ///
    /// # Errors
    /// [`RouteError::Duplicate`] when the route has a handler already,
    /// [`RouteError::Empty`] for an empty name.
    pub fn task(
        mut self,
        route: impl Into<Cow<'static, str>>,
        handler: Arc<dyn TaskHandler>,
    ) -> Result<Router, RouteError> {
        let route = route.into();
        if route.is_empty() {
            return Err(RouteError::Empty);
        }
        if self.routes.contains_key(&route) {
            return Err(RouteError::Duplicate(route.into_owned()));
        }
        self.routes.insert(route, handler);
        Ok(self)
    }

    /// The routes this router handles, sorted.
    pub fn routes(&self) -> Vec<&str> {
        let mut routes: Vec<&str> = self.routes.keys().map(|r| r.as_ref()).collect();
        routes.sort_unstable();
        routes
    }
}

#[async_trait]
impl TaskHandler for Router {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        match self.routes.get(task.route.as_ref()) {
            Some(handler) => handler.handle(task, ctx).await,
            None => Err(TaskError::reject(format!(
                "unknown route {:?}; this pool handles {}",
                task.route,
                self.routes()
                    .iter()
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde::Deserialize;

    use super::*;
    use crate::trace::{NoopSpan, SpanSpec, TaskSpan, TraceContext, TraceFactory};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Greet {
        text: String,
    }
    impl Job for Greet {
        const ROUTE: &'static str = "greet";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Add {
        a: i64,
        b: i64,
    }
    impl Job for Add {
        const ROUTE: &'static str = "add";
    }

    /// Records what each typed handler got, as text.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn seen(&self) -> Vec<String> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl JobHandler<Greet> for Recorder {
        async fn handle(
            &self,
            job: Greet,
            task: &Task,
            ctx: &TaskContext<'_>,
        ) -> Result<(), TaskError> {
            if let Ok(mut v) = self.0.lock() {
                v.push(format!(
                    "greet {} (attempt {}, pool {})",
                    job.text, task.attempts, ctx.pool
                ));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl JobHandler<Add> for Recorder {
        async fn handle(&self, job: Add, _: &Task, _: &TaskContext<'_>) -> Result<(), TaskError> {
            let sum = job
                .a
                .checked_add(job.b)
                .ok_or_else(|| TaskError::reject("overflow"))?;
            if let Ok(mut v) = self.0.lock() {
                v.push(format!("add {sum}"));
            }
            Ok(())
        }
    }

    struct NoTracer;
    impl TraceFactory for NoTracer {
        fn start_span(&self, _: SpanSpec<'_>) -> Box<dyn TaskSpan> {
            Box::new(NoopSpan(context()))
        }
    }

    fn context() -> TraceContext {
        TraceContext {
            trace_id: 1,
            span_id: 1,
            sampled: false,
            trace_state: None,
        }
    }

    /// Runs `handler` on `task` with a context for pool "p".
    fn run(handler: &dyn TaskHandler, task: &Task) -> Result<(), TaskError> {
        let span = NoopSpan(context());
        let tag = Mutex::new(None);
        let ctx = TaskContext {
            span: &span,
            tracer: &NoTracer,
            pool: "p",
            queue: "q",
            tag: &tag,
            cancellation: &crate::signal::NeverStopped,
        };
        block_on(handler.handle(task, &ctx))
    }

    /// The handlers here never wait, so one poll finishes them (contracts have no runtime).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    fn router(recorder: &Arc<Recorder>) -> Router {
        Router::new()
            .job::<Greet>(recorder.clone())
            .and_then(|r| r.job::<Add>(recorder.clone()))
            .unwrap_or_default()
    }

    #[test]
    fn the_router_dispatches_each_route_to_its_typed_handler() {
        let recorder = Arc::new(Recorder::default());
        let router = router(&recorder);
        assert_eq!(router.routes(), ["add", "greet"]);
        let greet =
            Task::from_job(&Greet { text: "hi".into() }).unwrap_or_else(|_| Task::new("x", ""));
        let add = Task::from_job(&Add { a: 2, b: 3 }).unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(run(&router, &greet), Ok(()));
        assert_eq!(run(&router, &add), Ok(()));
        assert_eq!(recorder.seen(), ["greet hi (attempt 0, pool p)", "add 5"]);
        // A handler's own refusal comes through unchanged.
        let overflow =
            Task::from_job(&Add { a: i64::MAX, b: 1 }).unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(run(&router, &overflow), Err(TaskError::reject("overflow")));
    }

    #[test]
    fn an_unknown_route_is_rejected_naming_it_and_the_known_ones() {
        let recorder = Arc::new(Recorder::default());
        let error = run(&router(&recorder), &Task::new("resize", "{}")).err();
        let Some(TaskError::Reject { reason }) = error else {
            panic!("expected a rejection, got {error:?}");
        };
        assert_eq!(
            reason,
            r#"unknown route "resize"; this pool handles "add", "greet""#
        );
        assert!(recorder.seen().is_empty());
    }

    #[test]
    fn an_undecodable_payload_is_rejected_with_the_serde_error() {
        let recorder = Arc::new(Recorder::default());
        let router = router(&recorder);
        for (payload, expected) in [
            (&br#"{"a":1}"#[..], "missing field `b`"),
            (
                br#"{"a":1,"b":"two"}"#,
                "invalid type: string \"two\", expected i64",
            ),
            (br#"{"a":1,"b":2,"c":3}"#, "unknown field `c`"),
            (b"not json", "expected ident"),
            (&[0xff, 0xfe], "expected value"),
        ] {
            let error = run(&router, &Task::new("add", payload)).err();
            let Some(TaskError::Reject { reason }) = error else {
                panic!("expected a rejection for {payload:?}, got {error:?}");
            };
            assert!(
                reason.starts_with(r#"payload of route "add" does not decode as "#),
                "{reason}"
            );
            assert!(reason.contains(expected), "{reason} lacks {expected}");
        }
        assert!(recorder.seen().is_empty());
    }

    #[test]
    fn a_route_has_one_handler_and_a_name() {
        let recorder = Arc::new(Recorder::default());
        let twice = Router::new()
            .job::<Greet>(recorder.clone())
            .and_then(|r| r.job::<Greet>(recorder.clone()));
        assert_eq!(twice.err(), Some(RouteError::Duplicate("greet".into())));
        let unnamed = Router::new().task("", Arc::new(router(&recorder)));
        assert_eq!(unnamed.err(), Some(RouteError::Empty));
    }

    /// The encoding is a public contract (non-Rust producers write it): route, and the
    /// payload as compact JSON; in a task's own JSON the payload is that text.
    #[test]
    fn the_json_shape_of_a_job_is_stable() {
        let task = Task::from_job(&Add { a: 2, b: -3 }).unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(task.route, "add");
        assert_eq!(task.payload, br#"{"a":2,"b":-3}"#);
        assert!(task.headers.is_empty());
        let wire = serde_json::to_value(&task).unwrap_or_default();
        assert_eq!(wire["route"], "add");
        assert_eq!(wire["payload"], r#"{"a":2,"b":-3}"#);
        // What another language writes: fields in any sequence, any whitespace.
        let by_hand = Task::new("add", " {\n \"b\": 4, \"a\": 1 }");
        assert_eq!(by_hand.decode_job::<Add>(), Ok(Add { a: 1, b: 4 }));
        let text = Task::from_job(&Greet {
            text: "grüß \"dich\"".into(),
        })
        .unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(text.payload, "{\"text\":\"grüß \\\"dich\\\"\"}".as_bytes());
    }

    #[test]
    fn decoding_checks_the_route() {
        let task = Task::new("greet", r#"{"a":1,"b":2}"#);
        let error = task.decode_job::<Add>().err();
        assert!(
            matches!(&error, Some(TaskError::Reject { reason }) if reason.starts_with(r#"route "greet" is not the route "add""#)),
            "{error:?}"
        );
    }
}
