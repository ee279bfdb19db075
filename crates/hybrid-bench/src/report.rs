//! The side-by-side table: one column per server or phone (medians over
//! runs), then the ratio of each to the last one.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::stats::{median, Failures};

/// A row of a benchmark's table.
pub trait Metric: Copy + Ord + 'static {
    /// Every row, in report order.
    const ALL: &'static [Self];
    /// Row title.
    fn label(self) -> &'static str;
    /// Decimal places printed.
    fn decimals(self) -> usize;
}

/// The numbers of one run against one server or phone.
#[derive(Debug, Clone)]
pub struct RunResult<M> {
    /// Measurements (absent when the phase was skipped or nothing completed).
    pub metrics: BTreeMap<M, f64>,
    /// Failures by phase and reason.
    pub failures: Failures,
}

impl<M> Default for RunResult<M> {
    fn default() -> Self {
        RunResult {
            metrics: BTreeMap::new(),
            failures: Failures::default(),
        }
    }
}

/// All runs against one server or phone.
#[derive(Debug, Clone)]
pub struct Column<M> {
    /// `--server` / `--phone` name.
    pub name: String,
    /// One result per run.
    pub runs: Vec<RunResult<M>>,
}

impl<M: Metric> Column<M> {
    fn median(&self, m: M) -> Option<f64> {
        let values: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.metrics.get(&m).copied())
            .collect();
        median(&values)
    }

    fn failures(&self) -> Failures {
        let mut f = Failures::default();
        for r in &self.runs {
            f.merge(&r.failures);
        }
        f
    }
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "—".into(),
    }
}

/// A Markdown table of every metric any column has, plus failure reasons.
pub fn table<M: Metric>(columns: &[Column<M>]) -> String {
    let mut out = String::new();
    let runs = columns.iter().map(|c| c.runs.len()).max().unwrap_or(0);
    let _ = write!(out, "| measurement (median of {runs}) |");
    for c in columns {
        let _ = write!(out, " {} |", c.name);
    }
    let last = columns.last();
    if columns.len() > 1 {
        for c in columns.iter().take(columns.len() - 1) {
            let _ = write!(out, " {} / {} |", c.name, last.map_or("", |l| &l.name));
        }
    }
    out.push('\n');
    out.push_str("|---|");
    for _ in 0..(columns.len() * 2).saturating_sub(1).max(1) {
        out.push_str("---|");
    }
    out.push('\n');
    for &m in M::ALL {
        let values: Vec<Option<f64>> = columns.iter().map(|c| c.median(m)).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(out, "| {} |", m.label());
        for v in &values {
            let _ = write!(out, " {} |", fmt(*v, m.decimals()));
        }
        if columns.len() > 1 {
            let base = values.last().copied().flatten();
            for v in values.iter().take(values.len() - 1) {
                let ratio = match (v, base) {
                    (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                    _ => None,
                };
                let cell = ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
                let _ = write!(out, " {cell} |");
            }
        }
        out.push('\n');
    }
    for c in columns {
        let f = c.failures();
        if f.total() > 0 {
            let _ = writeln!(out, "\nfailures, {}:", c.name);
            for (reason, n) in &f.0 {
                let _ = writeln!(out, "  {n:>7}  {reason}");
            }
        }
    }
    out
}

/// One line about the machine: CPU model, cores, kernel, open-file limit.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or_else(|| "unlimited".into(), |n| n.to_string());
    format!("{cpu}, {cores} cores, Linux {kernel}, open-file limit {nofile}")
}
