//! How a worker's process ended.

use nix::sys::signal::Signal;

/// The end of a worker's process, as `waitpid(2)` reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when the process called `exit`.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
    pub core_dumped: bool,
}

impl ExitInfo {
    /// From the raw status `waitpid(2)` stored (`WIFEXITED`/`WTERMSIG`/…).
    pub fn from_wait_status(raw: i32) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(raw);
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
            core_dumped: status.core_dumped(),
        }
    }

    /// When the status could not be collected (e.g. reaped elsewhere).
    pub fn unknown() -> Self {
        ExitInfo::default()
    }

    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The signal's name (`SIGTERM`), or its number when it has no name.
    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(|number| match Signal::try_from(number) {
            Ok(signal) => signal.as_str().to_owned(),
            Err(_) => format!("signal {number}"),
        })
    }

    /// In plain words: "exited with code 0", "killed by SIGKILL (core dumped)".
    pub fn describe(&self) -> String {
        match (self.code, self.signal_name()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => {
                let core = if self.core_dumped {
                    " (core dumped)"
                } else {
                    ""
                };
                format!("killed by {signal}{core}")
            }
            (None, None) => "ended (status unknown)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        let code = ExitInfo {
            code: Some(3),
            ..Default::default()
        };
        assert_eq!(code.describe(), "exited with code 3");
        assert!(!code.success());
        let signal = ExitInfo {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(signal.describe(), "killed by SIGKILL");
        let core = ExitInfo {
            signal: Some(11),
            core_dumped: true,
            ..Default::default()
        };
        assert_eq!(core.describe(), "killed by SIGSEGV (core dumped)");
        assert_eq!(ExitInfo::unknown().describe(), "ended (status unknown)");
    }
}
