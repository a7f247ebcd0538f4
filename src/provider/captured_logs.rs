//! Test helper: captures what `tracing` writes on the test's thread.
//!
//! `tracing` caches each call site's interest process-wide, computed by the first thread that
//! reaches it; with a thread-local subscriber only, a sibling test's thread (no subscriber)
//! caches `never` and this test's events vanish (tokio-rs/tracing#3611). An inert global
//! subscriber, installed once, keeps every thread interested, so the capture sees all events.

use std::sync::{Arc, Mutex, Once};

/// Everything the capturing subscriber wrote, as text.
#[derive(Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Starts capturing every event of this thread, at every level, until the guard drops.
    pub(crate) fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        static INERT_GLOBAL: Once = Once::new();
        INERT_GLOBAL.call_once(|| {
            // Another test binary's global subscriber, if any, does the same job.
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        (logs, guard)
    }

    pub(crate) fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
