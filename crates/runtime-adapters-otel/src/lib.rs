//! OpenTelemetry trace export for plba (work in progress).
