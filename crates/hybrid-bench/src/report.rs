//! The side-by-side table: one column per server or phone (medians over
//! runs), then the ratio of each to the last one; with two or more runs,
//! a second table of the same ratios taken run by run.
//!
//! Runs are interleaved (run *i* of every column back to back), so the
//! ratio within one run compares numbers taken minutes apart, while the
//! ratio of medians may pair a quiet run of one column with a busy run of
//! the other. On a shared machine whose speed drifts between runs (the
//! phone's CPU per ceremony moved 2 250 → 3 600 µs for the same binary
//! over one invocation, docs/performance.md) the run-by-run ratios and
//! their spread say more than the ratio of medians alone.

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
    paired(&mut out, columns);
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

/// The ratio of each column to the last one, run by run (run *i* against
/// run *i*): median, lowest and highest over the runs both have. Printed
/// only with two or more columns and two or more such runs.
fn paired<M: Metric>(out: &mut String, columns: &[Column<M>]) {
    let Some((base, others)) = columns.split_last() else {
        return;
    };
    let ratios = |c: &Column<M>, m: M| -> Vec<f64> {
        c.runs
            .iter()
            .zip(&base.runs)
            .filter_map(|(a, b)| match (a.metrics.get(&m), b.metrics.get(&m)) {
                (Some(&a), Some(&b)) if b != 0.0 => Some(a / b),
                _ => None,
            })
            .collect()
    };
    let rows: Vec<(M, Vec<Vec<f64>>)> = M::ALL
        .iter()
        .map(|&m| (m, others.iter().map(|c| ratios(c, m)).collect::<Vec<_>>()))
        .filter(|(_, r)| r.iter().any(|r| r.len() >= 2))
        .collect();
    if others.is_empty() || rows.is_empty() {
        return;
    }
    let _ = write!(out, "\n| run by run: median (lowest–highest) |");
    for c in others {
        let _ = write!(out, " {} / {} |", c.name, base.name);
    }
    out.push_str("\n|---|");
    for _ in others {
        out.push_str("---|");
    }
    out.push('\n');
    for (m, per_column) in rows {
        let _ = write!(out, "| {} |", m.label());
        for r in &per_column {
            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let cell = match median(r) {
                Some(med) if r.len() >= 2 => format!("{med:.2}× ({lo:.2}–{hi:.2})"),
                _ => "—".to_owned(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum T {
        Cpu,
    }

    impl Metric for T {
        const ALL: &'static [Self] = &[T::Cpu];
        fn label(self) -> &'static str {
            "cpu"
        }
        fn decimals(self) -> usize {
            0
        }
    }

    fn column(name: &str, values: &[f64]) -> Column<T> {
        Column {
            name: name.into(),
            runs: values
                .iter()
                .map(|&v| RunResult {
                    metrics: BTreeMap::from([(T::Cpu, v)]),
                    failures: Failures::default(),
                })
                .collect(),
        }
    }

    /// A drifting machine: each run of both columns is slower than the
    /// last. The ratio of medians (2 000 / 1 300) and the run-by-run
    /// ratios (all 2.00×) differ, and both are printed.
    #[test]
    fn run_by_run_ratios_pair_run_i_with_run_i() {
        let a = column("a", &[1000.0, 2000.0, 4000.0]);
        let b = column("b", &[500.0, 1000.0, 2000.0]);
        let t = table(&[a, b]);
        assert!(t.contains("| cpu | 2000 | 1000 | 2.00× |"), "{t}");
        assert!(
            t.contains("| run by run: median (lowest–highest) | a / b |"),
            "{t}"
        );
        assert!(t.contains("| cpu | 2.00× (2.00–2.00) |"), "{t}");

        let a = column("a", &[1000.0, 3000.0, 2000.0]);
        let b = column("b", &[1000.0, 1000.0, 4000.0]);
        let t = table(&[a, b]);
        // Medians 2 000 and 1 000; run by run 1.00, 3.00 and 0.50.
        assert!(t.contains("| cpu | 2000 | 1000 | 2.00× |"), "{t}");
        assert!(t.contains("| cpu | 1.00× (0.50–3.00) |"), "{t}");
    }

    /// One run, or one column: nothing to pair, no second table.
    #[test]
    fn no_run_by_run_table_without_two_runs_and_two_columns() {
        let t = table(&[column("a", &[1.0]), column("b", &[2.0])]);
        assert!(!t.contains("run by run"), "{t}");
        let t = table(&[column("a", &[1.0, 2.0])]);
        assert!(!t.contains("run by run"), "{t}");
    }
}
