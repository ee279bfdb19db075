//! What the benchmark reads about a server process: resident memory
//! (`/proc/<pid>/status` `VmRSS`, `RssAnon`, `VmHWM`) and CPU time (`/proc/<pid>/stat` `utime` +
//! `stime`, all threads, including threads that have exited).

use std::time::Duration;

use crate::BenchError;

/// One reading of a process's resident memory and CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `RssAnon` in KiB: the heap and stacks, without the program's own
    /// code pages (`RssFile`), which grow once as code runs for the first time.
    pub anon_kib: u64,
    /// `VmHWM` in KiB: the highest `VmRSS` so far.
    pub hwm_kib: u64,
    /// `utime + stime` in clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`. Fails (never guesses)
/// when either cannot be read or parsed.
pub fn sample(pid: u32) -> Result<Sample, BenchError> {
    let status = read(pid, "status")?;
    let stat = read(pid, "stat")?;
    Ok(Sample {
        rss_kib: parse_kib(&status, "VmRSS:").ok_or(BenchError::Proc {
            pid,
            what: "VmRSS in status",
        })?,
        anon_kib: parse_kib(&status, "RssAnon:").ok_or(BenchError::Proc {
            pid,
            what: "RssAnon in status",
        })?,
        hwm_kib: parse_kib(&status, "VmHWM:").ok_or(BenchError::Proc {
            pid,
            what: "VmHWM in status",
        })?,
        cpu_ticks: parse_cpu_ticks(&stat).ok_or(BenchError::Proc {
            pid,
            what: "utime/stime in stat",
        })?,
    })
}

fn read(pid: u32, file: &'static str) -> Result<String, BenchError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .map_err(|_| BenchError::Proc { pid, what: file })
}

/// `VmRSS:   12345 kB` → 12345 (for `field` = `"VmRSS:"`).
pub fn parse_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Fields 14 (`utime`) + 15 (`stime`) of `/proc/<pid>/stat` (proc(5)); the
/// command name in field 2 may contain spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    // After ')' the first field is field 3 (state): utime is the 12th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// Clock ticks as a duration (`sysconf(_SC_CLK_TCK)`, normally 100 Hz).
pub fn ticks_to_duration(ticks: u64) -> Duration {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\thybridd\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nRssAnon:\t  1000 kB\nThreads:\t3\n";
        assert_eq!(parse_kib(status, "VmRSS:"), Some(4321));
        assert_eq!(parse_kib(status, "RssAnon:"), Some(1000));
        assert_eq!(parse_kib("Name: x\n", "VmRSS:"), None);
        // A command name with spaces and a ')' inside.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 99 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn reads_itself() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
    }
}
