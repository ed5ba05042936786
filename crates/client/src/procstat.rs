//! CPU time and resident memory of a process, from `/proc` (Linux).

use std::time::Instant;

/// One reading of a process's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// When the reading was taken.
    pub at: Instant,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

/// Reads utime + stime of `pid` (`None`: this process) from `/proc/<pid>/stat`.
pub fn cpu_sample(pid: Option<u32>) -> Option<CpuSample> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let at = Instant::now();
    Some(CpuSample {
        at,
        ticks: parse_stat_ticks(&text)?,
    })
}

/// utime + stime from the text of `/proc/<pid>/stat` (fields 14 and 15; the command name in
/// field 2 may contain spaces and parentheses, so counting starts after the last ')').
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th item here, stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Kernel clock ticks per second (`sysconf(_SC_CLK_TCK)`, usually 100).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory arguments.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(a: &CpuSample, b: &CpuSample) -> Option<f64> {
    let wall = b.at.checked_duration_since(a.at)?.as_secs_f64();
    if wall <= 0.0 {
        return None;
    }
    let ticks = b.ticks.checked_sub(a.ticks)? as f64;
    Some(ticks / ticks_per_second() / wall * 100.0)
}

/// Resident set size of `pid` in KiB, from `VmRSS` in `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&text, "VmRSS:")
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        let stat = "4242 (imss (x) y) S 1 4242 4242 0 -1 4194304 1234 0 0 0 \
                    517 83 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(600));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn status_rss() {
        let s = "Name:\timss\nVmPeak:\t  999 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kib(s, "VmRSS:"), Some(51234));
        assert_eq!(parse_status_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn own_process_is_readable_and_cpu_percent_is_sane() {
        let a = cpu_sample(None).expect("own stat");
        let spin_until = Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < spin_until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = cpu_sample(None).expect("own stat");
        let pct = cpu_percent(&a, &b).expect("percent");
        // One thread spinning: close to 100 % of a core (ticks are 10 ms coarse; the test
        // harness may run other threads).
        assert!(pct > 30.0 && pct < 400.0, "cpu {pct}");
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 100));
    }
}
