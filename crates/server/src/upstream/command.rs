//! `kind = "command"`: a program whose stdout is the source's audio — `arecord` on a sound
//! card's line-in, a synthesiser, a decoder an operator prefers — as raw PCM or WAV.
//!
//! The command line is split like a shell would (quotes, backslashes) but no shell runs.
//! The program gets its own process group, so that whatever it starts goes with it, and
//! dies with the worker thread if the server dies (`PR_SET_PDEATHSIG`). When its output
//! ends, stalls for `stall_ms`, or the source stops, the whole group is killed and the
//! program reaped; the worker then starts it again after the backoff. Its stderr goes to
//! the log, a few lines a minute at most.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imss_media::{PcmFormat, StreamEnd, Upstream, decode_pcm_stream};

use super::{Attempt, format_known};

/// Stderr lines logged per window; the rest are counted.
const STDERR_LINES: u32 = 10;
const STDERR_WINDOW: Duration = Duration::from_secs(60);
/// Longest stderr line logged (the rest is cut).
const STDERR_LINE_BYTES: usize = 512;
/// How long a program whose output ended gets to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(300);
/// How often a read waiting for the program checks whether the source stopped.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How often the program is checked for an exit while its output still flows.
const EXIT_CHECK: Duration = Duration::from_millis(500);

/// The program of a `command` source.
pub(super) struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The command line as configured (for logs and health).
    pub line: String,
    /// What the program writes.
    pub format: PcmFormat,
}

/// Runs the program once, playing its output until it ends; returns why it ended.
pub(super) fn play(spec: &CommandSpec, attempt: &mut Attempt<'_>) -> String {
    let up = Arc::clone(attempt.upstream());
    up.connecting(&spec.line);
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setpgid and prctl are async-signal-safe and touch only the new process.
    unsafe {
        command.pre_exec(|| {
            // Its own process group, so that killing the group ends everything it started.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Killed if the thread that started it (the worker) dies with the server.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return format!("cannot start {:?}: {e}", spec.argv[0]),
    };
    let pid = child.id();
    tracing::debug!(source = up.name(), pid, command = %spec.line, "command started");
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let status = kill_and_reap(&mut child);
        return format!(
            "the command's output pipes are missing ({})",
            describe(status)
        );
    };
    let name = up.name().to_string();
    let logger = std::thread::Builder::new()
        .name(format!("upstream-{name}-stderr"))
        .spawn(move || log_stderr(&name, pid, stderr));
    if let Err(e) = logger {
        tracing::warn!(source = up.name(), error = %e, "cannot log the command's stderr");
    }
    up.connected();
    let mut reader = up.watch(PipeReader {
        pipe: stdout,
        child: &mut child,
        checked: Instant::now(),
        exited: false,
        stall: up.settings().stall,
        up: Arc::clone(&up),
    });
    let result = decode_pcm_stream(
        &mut reader,
        spec.format,
        &mut |i| format_known(&up, i),
        &mut |samples| attempt.push(samples),
    );
    drop(reader);
    match result {
        Ok(StreamEnd::Stopped) => {
            let _ = kill_and_reap(&mut child);
            "stopped".into()
        }
        Ok(StreamEnd::Eof) => {
            attempt.ended_cleanly = true;
            let status = wait_briefly(&mut child).or_else(|| kill_and_reap(&mut child));
            format!("the command's output ended ({})", describe(status))
        }
        Err(e) => {
            let status = kill_and_reap(&mut child);
            format!("{e}; the command was killed ({})", describe(status))
        }
    }
}

/// The program's stdout: a read waits at most `stall` for data and fails once the source
/// stops; when the program exits, whatever it started is killed so that the output ends.
struct PipeReader<'a> {
    pipe: ChildStdout,
    child: &'a mut Child,
    /// When the program was last checked for an exit.
    checked: Instant,
    /// The program exited (and its process group was killed).
    exited: bool,
    stall: Duration,
    up: Arc<Upstream>,
}

impl Read for PipeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let deadline = Instant::now() + self.stall;
        loop {
            if self.up.should_let_go() {
                return Err(std::io::Error::new(
                    ErrorKind::ConnectionAborted,
                    "the live source stopped or has no listeners",
                ));
            }
            let now = Instant::now();
            if !self.exited && now - self.checked >= EXIT_CHECK {
                self.checked = now;
                if let Ok(Some(_)) = self.child.try_wait() {
                    // What it started may still hold the pipe: they go too, and what is
                    // left in the pipe plays out up to the end of the output.
                    self.exited = true;
                    kill_group(self.child.id());
                }
            }
            if now >= deadline {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no output for {} ms", self.stall.as_millis()),
                ));
            }
            let wait = (deadline - now).min(POLL_SLICE);
            let mut fds = libc::pollfd {
                fd: self.pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut fds, 1, wait.as_millis() as libc::c_int) };
            if ready > 0 {
                // Readable, closed (POLLHUP) or failed: the read tells which.
                return self.pipe.read(buf);
            }
            if ready < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// The program's exit status if it exits within [`EXIT_GRACE`].
fn wait_briefly(child: &mut Child) -> Option<ExitStatus> {
    let until = Instant::now() + EXIT_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // Whatever it left running in its group goes too.
                kill_group(child.id());
                return Some(status);
            }
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Kills the program's process group and reaps the program.
fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    // The program has not been reaped yet, so its pid (the group's id) is not reused.
    kill_group(child.id());
    let _ = child.kill();
    child.wait().ok()
}

fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a process group this worker created; ESRCH is harmless.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => s.to_string(),
        },
        None => "exit status unknown".into(),
    }
}

/// Logs the program's stderr, [`STDERR_LINES`] lines per [`STDERR_WINDOW`] at most.
fn log_stderr(source: &str, pid: u32, stderr: std::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u64);
    loop {
        line.clear();
        match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if window.elapsed() >= STDERR_WINDOW {
            if dropped > 0 {
                tracing::info!(
                    source,
                    pid,
                    lines = dropped,
                    "command stderr lines not logged"
                );
            }
            window = Instant::now();
            logged = 0;
            dropped = 0;
        }
        if logged >= STDERR_LINES {
            dropped += 1;
            continue;
        }
        logged += 1;
        let text = String::from_utf8_lossy(&line[..line.len().min(STDERR_LINE_BYTES)]);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(source, pid, stderr = text, "command says");
        }
    }
    if dropped > 0 {
        tracing::info!(
            source,
            pid,
            lines = dropped,
            "command stderr lines not logged"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Outage, Retry, UpstreamWorker};
    use super::*;
    use imss_media::{
        Fallback, LiveBlock, LiveFeed, Overflow, SourceState, UpstreamFeed, UpstreamSettings,
    };

    struct Quiet;
    impl LiveFeed for Quiet {
        fn next_block(&mut self, block: &mut LiveBlock) {
            block.set_silence();
        }
    }

    fn spec(line: &str, format: PcmFormat) -> CommandSpec {
        CommandSpec {
            argv: shlex::split(line).expect("split"),
            line: line.into(),
            format,
        }
    }

    fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    const S16_8K: PcmFormat = PcmFormat::S16Le {
        sample_rate: 8000,
        channels: 1,
    };

    #[test]
    fn a_program_that_ends_is_reported_with_its_status() {
        let (up, mut writer) = Upstream::new("t", UpstreamSettings::default());
        let mut outage = Outage::default();
        let mut attempt = Attempt::new(&mut writer, &mut outage);
        // 1,600 bytes of zeros: 800 samples, then exit 3.
        let s = spec(
            "sh -c 'head -c 1600 /dev/zero; echo oops >&2; exit 3'",
            S16_8K,
        );
        let reason = play(&s, &mut attempt);
        assert!(attempt.heard_audio());
        assert_eq!(reason, "the command's output ended (exit status 3)");
        assert_eq!(up.status().codec.as_deref(), Some("pcm_s16le"));
        assert_eq!(up.status().upstream.as_deref(), Some(s.line.as_str()));

        let mut attempt = Attempt::new(&mut writer, &mut outage);
        let reason = play(&spec("/nonexistent/program", S16_8K), &mut attempt);
        assert!(
            reason.starts_with("cannot start \"/nonexistent/program\""),
            "{reason}"
        );
        assert!(!attempt.heard_audio());
    }

    #[test]
    fn a_silent_program_is_killed_after_the_stall_time() {
        let settings = UpstreamSettings {
            prebuffer: Duration::from_millis(100),
            stall: Duration::from_millis(500),
            overflow: Overflow::Wait,
        };
        let (_up, mut writer) = Upstream::new("t", settings);
        let mut outage = Outage::default();
        let mut attempt = Attempt::new(&mut writer, &mut outage);
        let started = Instant::now();
        let reason = play(&spec("sleep 30", S16_8K), &mut attempt);
        let took = started.elapsed();
        assert!(reason.contains("no output for 500 ms"), "{reason}");
        assert!(reason.contains("signal 9"), "{reason}");
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn the_worker_restarts_the_program_and_kills_it_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        // Each run appends its pid, then writes a tone-free stream of 0x0101 samples for ever.
        let line = format!(
            "sh -c 'echo $$ >> {}; exec cat /dev/zero | tr \"\\\\000\" \"\\\\001\"'",
            pids.display()
        );
        let settings = UpstreamSettings {
            prebuffer: Duration::from_millis(100),
            stall: Duration::from_millis(1000),
            overflow: Overflow::Wait,
        };
        let (up, writer) = Upstream::new("restart", settings);
        let mut feed = UpstreamFeed::new(Arc::clone(&up), Fallback::Feed(Box::new(Quiet)));
        let worker = UpstreamWorker::spawn(
            Arc::clone(&up),
            writer,
            super::super::Source::Command(spec(&line, S16_8K)),
            Retry {
                min: Duration::from_millis(50),
                max: Duration::from_millis(100),
            },
        )
        .expect("worker");
        let mut block = LiveBlock::silence();
        let level = 257.0 / 32768.0;
        let read_pids = || -> Vec<i32> {
            std::fs::read_to_string(&pids)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        };
        wait_for("the program's audio", Duration::from_secs(5), || {
            feed.next_block(&mut block);
            block.pcm()[0] == level
        });
        assert_eq!(up.status().state, SourceState::Playing);
        let first = read_pids();
        assert_eq!(first.len(), 1);
        // SAFETY: kill(2) on the test's own grandchild.
        unsafe {
            libc::kill(first[0], libc::SIGKILL);
        }
        // Its output ends (what it started goes with it); what is queued and left in the
        // pipe plays out while the worker starts it again, so the audio goes on.
        wait_for("a second run", Duration::from_secs(10), || {
            feed.next_block(&mut block);
            read_pids().len() == 2
        });
        wait_for("the second run's audio", Duration::from_secs(10), || {
            feed.next_block(&mut block);
            block.pcm()[0] == level && up.status().state == SourceState::Playing
        });
        let status = up.status();
        assert!(status.reconnects >= 1, "{status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("signal 9")),
            "{status:?}"
        );
        let second = read_pids()[1];
        drop(feed);
        drop(worker);
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(second, 0) } == 0;
        assert!(!alive, "the program outlived its source");
        assert_eq!(up.status().state, SourceState::Idle);
    }
}
