//! The plba runtime core: lifecycle, configuration, supervision, tracing, health and control (work in progress).
