//! Logging to standard error, for the headless binary and the desktop app alike, and the
//! last lines kept in memory for the dashboard's live log ([`LogBuffer`]).

use std::{
    collections::VecDeque,
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use serde::Serialize;
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{
    Layer, filter::Targets, layer::Context, layer::SubscriberExt, util::SubscriberInitExt,
};

/// What is logged unless `RUST_LOG` says otherwise. ruma's state resolution and push rules
/// open info-level spans for every step (push rules one per field of every event, for every
/// recipient): kept, their fields would be formatted each time, for nothing in the log.
pub const DEFAULT_LOG: &str = "info,ruma_state_res=warn,ruma_common=warn";

/// Lines kept for the dashboard.
const KEPT: usize = 2000;

/// One logged line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LogLine {
    /// Its number: later lines have larger ones (ask for lines after the last one seen).
    #[cfg_attr(test, ts(type = "number"))]
    pub seq: u64,
    /// When (ms since the epoch).
    #[cfg_attr(test, ts(type = "number"))]
    pub ts: i64,
    /// error, warn, info, debug or trace.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields.
    pub message: String,
}

/// The last lines logged, newest last. Cheap to clone.
#[derive(Clone, Default)]
pub struct LogBuffer {
    inner: Arc<Mutex<Lines>>,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogBuffer")
    }
}

#[derive(Default)]
struct Lines {
    next: u64,
    lines: VecDeque<LogLine>,
}

impl LogBuffer {
    /// Lines after `after` (all kept ones when 0) at `level` or more severe, at most
    /// `limit`, oldest first.
    pub fn lines(&self, after: u64, level: Level, limit: usize) -> Vec<LogLine> {
        let lines = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut found: Vec<LogLine> = lines
            .lines
            .iter()
            .rev()
            .take_while(|line| line.seq > after)
            .filter(|line| line.level.parse::<Level>().is_ok_and(|l| l <= level))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }

    fn push(&self, level: &Level, target: &str, message: String) {
        let mut lines = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        lines.next += 1;
        let seq = lines.next;
        if lines.lines.len() == KEPT {
            lines.lines.pop_front();
        }
        lines.lines.push_back(LogLine {
            seq,
            ts: crate::storage::now_ms(),
            level: level.as_str().to_lowercase(),
            target: target.to_owned(),
            message,
        });
    }
}

/// The layer that copies each event into a [`LogBuffer`].
struct BufferLayer(LogBuffer);

/// Writes an event's message, then its other fields as `name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for BufferLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        self.0.push(
            metadata.level(),
            metadata.target(),
            fields.message + &fields.rest,
        );
    }
}

/// Logs to standard error what `RUST_LOG` asks for (`level,target=level,...`), or
/// [`DEFAULT_LOG`], and keeps the same lines for the dashboard in the returned buffer.
/// Target filters only, which need no regex engine (the span and field filters of
/// `EnvFilter` would keep one in memory).
pub fn init() -> LogBuffer {
    let from_env = std::env::var("RUST_LOG").ok().map(|v| v.parse::<Targets>());
    let filter = match from_env {
        Some(Ok(filter)) => filter,
        Some(Err(e)) => {
            eprintln!("warning: RUST_LOG is not understood ({e}); using {DEFAULT_LOG}");
            DEFAULT_LOG.parse().unwrap_or_default()
        }
        None => DEFAULT_LOG.parse().unwrap_or_default(),
    };
    let buffer = LogBuffer::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .and_then(BufferLayer(buffer.clone()))
                .with_filter(filter),
        )
        .init();
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_after_the_last_seen_at_the_asked_level() {
        let buffer = LogBuffer::default();
        buffer.push(&Level::INFO, "kith::control", "Kith is serving".to_owned());
        buffer.push(
            &Level::WARN,
            "kith::health",
            "federation degraded".to_owned(),
        );
        buffer.push(&Level::DEBUG, "kith::sync", "woke".to_owned());
        let all = buffer.lines(0, Level::TRACE, 100);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].seq, 1);
        let warnings = buffer.lines(0, Level::WARN, 100);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].message, "federation degraded");
        assert_eq!(buffer.lines(2, Level::TRACE, 100).len(), 1);
        assert_eq!(buffer.lines(0, Level::TRACE, 1)[0].seq, 3);
    }
}
