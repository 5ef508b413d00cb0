//! The `stdout` exporter: one JSON object per span and line.

use std::io::{self, Write};
use std::time::SystemTime;

use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use serde_json::{Map, Value as Json, json};

/// Writes spans as JSON lines to standard output (or any writer, for tests).
pub(crate) struct StdoutExporter {
    service_name: String,
    out: Box<dyn Fn() -> Box<dyn Write> + Send + Sync>,
}

impl StdoutExporter {
    pub(crate) fn new(service_name: String) -> Self {
        StdoutExporter {
            service_name,
            out: Box::new(|| Box::new(io::stdout().lock())),
        }
    }

    /// Runs on the exporter thread, so the blocking write never stalls a task.
    pub(crate) fn export(&self, batch: &[SpanData]) -> io::Result<()> {
        let mut text = String::new();
        for span in batch {
            text.push_str(&span_json(span, &self.service_name).to_string());
            text.push('\n');
        }
        let mut out = (self.out)();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

/// The JSON form of one span; ids in the W3C lowercase hex form.
pub(crate) fn span_json(span: &SpanData, service_name: &str) -> Json {
    let attributes: Map<String, Json> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), value_json(&kv.value)))
        .collect();
    let links: Vec<Json> = span
        .links
        .iter()
        .map(|l| {
            json!({
                "trace_id": l.span_context.trace_id().to_string(),
                "span_id": l.span_context.span_id().to_string(),
            })
        })
        .collect();
    let parent = (span.parent_span_id != opentelemetry::trace::SpanId::INVALID)
        .then(|| span.parent_span_id.to_string());
    let status = match &span.status {
        Status::Unset => json!({"code": "unset"}),
        Status::Ok => json!({"code": "ok"}),
        Status::Error { description } => json!({"code": "error", "message": description}),
    };
    let kind = match span.span_kind {
        SpanKind::Internal => "internal",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Client => "client",
        SpanKind::Server => "server",
    };
    json!({
        "service": service_name,
        "name": span.name,
        "kind": kind,
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "parent_span_id": parent,
        "start_unix_nano": unix_nanos(span.start_time),
        "end_unix_nano": unix_nanos(span.end_time),
        "attributes": attributes,
        "links": links,
        "status": status,
    })
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => Json::from(*f),
        other => Json::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Mutex};

    use runtime_contracts::{SpanKind, SpanSpec, TraceContext};

    use super::*;
    use crate::pipeline::{Exporter, Pipeline};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_json_line_per_span_with_w3c_ids() {
        let parent = TraceContext::parse_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        let links = [parent.clone()];
        let pipeline = Pipeline::new(
            Exporter::Stdout(StdoutExporter::new("svc".into())),
            8,
            8,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(1),
        );
        let scope = opentelemetry::InstrumentationScope::builder("t").build();
        let span = crate::span::start(
            SpanSpec::new("process q")
                .kind(SpanKind::Consumer)
                .parent(Some(&parent))
                .links(&links)
                .attr("messaging.destination.name", "q")
                .attr("messaging.message.delivery_attempt", 2i64),
            &scope,
            &pipeline.sink,
        );
        use runtime_contracts::TaskSpan;
        span.set_error("boom");
        let ctx = span.context();
        drop(span);
        drop(pipeline.control);
        let mut rx = pipeline.worker;
        let data = rx_one(&mut rx);

        let buf = Buf::default();
        let sink = buf.clone();
        let exporter = StdoutExporter {
            service_name: "svc".into(),
            out: Box::new(move || Box::new(sink.clone())),
        };
        exporter.export(&[data.clone(), data]).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: Json = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(v["span_id"], ctx.span_id_hex());
        assert_eq!(v["kind"], "consumer");
        assert_eq!(v["links"][0]["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["attributes"]["messaging.destination.name"], "q");
        assert_eq!(v["attributes"]["messaging.message.delivery_attempt"], 2);
        assert_eq!(v["status"]["message"], "boom");
    }

    fn rx_one(worker: &mut crate::pipeline::Worker) -> SpanData {
        worker.try_recv_for_test().expect("a queued span")
    }
}
