//! The command line every app gets: `run`, `check-config`, `print-config` (work in progress).
