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

/// The machine's CPU time from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineSample {
    /// Every state summed (user … steal; guest time is already inside user).
    pub total: u64,
    /// Time the hypervisor ran something else while this machine wanted to run.
    pub steal: u64,
}

/// Reads the machine's CPU counters.
pub fn machine_sample() -> Option<MachineSample> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal guest
/// guest_nice.
pub fn parse_machine(stat: &str) -> Option<MachineSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    Some(MachineSample {
        total: v.iter().take(8).sum(),
        steal: v[7],
    })
}

/// Stolen time between two samples, in percent of the machine's CPU time (all cores).
pub fn steal_percent(a: &MachineSample, b: &MachineSample) -> Option<f64> {
    let total = b.total.checked_sub(a.total)?;
    let steal = b.steal.checked_sub(a.steal)?;
    (total > 0).then(|| steal as f64 / total as f64 * 100.0)
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
    fn machine_steal() {
        let a = "cpu  100 0 50 800 10 5 5 30 0 0\ncpu0 50 0 25 400 5 2 3 15 0 0\n";
        let b = "cpu  150 0 70 900 10 5 5 90 0 0\n";
        let (a, b) = (parse_machine(a).unwrap(), parse_machine(b).unwrap());
        assert_eq!(
            a,
            MachineSample {
                total: 1000,
                steal: 30
            }
        );
        assert_eq!(steal_percent(&a, &b), Some(60.0 / 230.0 * 100.0));
        assert_eq!(parse_machine("cpu 1 2 3\n"), None);
        assert!(machine_sample().is_some());
    }

    #[test]
    fn status_rss() {
        let s = "Name:\timss\nVmPeak:\t  999 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kib(s, "VmRSS:"), Some(51234));
        assert_eq!(parse_status_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn own_process_is_readable_and_cpu_percent_is_sane() {
        /// This process's CPU time, from the kernel's own clock (not /proc).
        fn cpu_time() -> Duration {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid clock id and a pointer to a live timespec.
            let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
            assert_eq!(rc, 0);
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        }
        let a = cpu_sample(None).expect("own stat");
        let (wall0, cpu0) = (Instant::now(), cpu_time());
        // Spin until 300 ms of CPU are used: on a loaded machine that may take longer than
        // 300 ms of wall time, which the percentage must show.
        let mut x = 0u64;
        while cpu_time() - cpu0 < Duration::from_millis(300)
            && wall0.elapsed() < Duration::from_secs(20)
        {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = cpu_sample(None).expect("own stat");
        let expected = (cpu_time() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64() * 100.0;
        let pct = cpu_percent(&a, &b).expect("percent");
        // /proc counts in 10 ms ticks: over 300 ms of CPU that is a few percent either way.
        assert!(
            (pct - expected).abs() < 10.0 && pct < 400.0,
            "cpu {pct:.1} %, the kernel's clock says {expected:.1} %"
        );
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 100));
    }
}
