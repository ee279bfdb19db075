//! Per-phase timestamps of one transaction, for timing tables and benchmarks.

use std::time::{Duration, Instant};

/// One finished phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Its name, e.g. `"handshake"`.
    pub name: String,
    /// How long it took (since the previous phase ended).
    pub duration: Duration,
    /// When it ended, counted from the start of the timeline.
    pub at: Duration,
}

/// Phases in the order they ended. Each [`Timeline::mark`] closes the phase
/// that began when the previous one ended.
#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    last: Instant,
    phases: Vec<Phase>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// Starts now.
    pub fn new() -> Self {
        let now = Instant::now();
        Timeline {
            start: now,
            last: now,
            phases: Vec::new(),
        }
    }

    /// Ends the current phase under `name` and starts the next one.
    pub fn mark(&mut self, name: &str) -> Duration {
        let now = Instant::now();
        let duration = now.saturating_duration_since(self.last);
        self.last = now;
        self.phases.push(Phase {
            name: name.to_owned(),
            duration,
            at: now.saturating_duration_since(self.start),
        });
        tracing::debug!(
            phase = name,
            micros = duration.as_micros() as u64,
            "phase done"
        );
        duration
    }

    /// Restarts the current phase's clock without recording anything (e.g.
    /// to leave out time spent waiting for something outside the protocol).
    pub fn skip(&mut self) {
        self.last = Instant::now();
    }

    /// The finished phases.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// The duration of the first phase called `name`.
    pub fn get(&self, name: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.duration)
    }

    /// Time from the start to the end of the last phase.
    pub fn total(&self) -> Duration {
        self.last.saturating_duration_since(self.start)
    }
}
