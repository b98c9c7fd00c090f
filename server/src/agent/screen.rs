//! The screen reader of one agent run: feeds the PTY's output into a VT parser
//! (`vt100`) sized like the PTY, and publishes what the profile's screen rules say
//! about the screen.
//!
//! It reads through [`WorkerHandle::observe`] (a server-internal reader: not an
//! attached client) with its own cursor, so it never slows the process or the
//! clients; if it falls behind the scrollback ring it continues from the oldest
//! byte kept (the agent's next redraw repairs the screen).
//!
//! Evaluation is coalesced: at most once per [`EVAL_DELAY`] while output flows.
//! A verdict is published once it held for the settle time (a redraw in progress
//! must not flip the activity back and forth); a resume-failure text is published
//! at once.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::activity::{RuleMatch, evaluate, screen_rows, truncate};
use super::profile::Profile;
use crate::supervisor::{Next, Subscription, WorkerHandle};

/// Output is evaluated at most this often while it flows.
pub const EVAL_DELAY: Duration = Duration::from_millis(30);
/// Bytes taken from the ring per read.
const READ_BYTES: usize = 64 * 1024;

/// What the screen says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScreenVerdict {
    /// The winning screen rule, if any matched.
    pub found: Option<RuleMatch>,
    /// A resume-failure text of the profile on screen (e.g. "No conversation
    /// found with session ID …"), the line that matched.
    pub failure: Option<String>,
}

/// Reads the screen of one run until it ends (or `cancel`), publishing verdicts on
/// `verdicts`. Dropping the sender at the end tells listeners the run is over.
pub async fn read_screen(
    mut subscription: Subscription,
    handle: WorkerHandle,
    profile: Arc<Profile>,
    settle: Duration,
    verdicts: watch::Sender<ScreenVerdict>,
    cancel: CancellationToken,
) {
    let size = handle.size();
    let mut parser = vt100::Parser::new(nonzero(size.rows, 24), nonzero(size.cols, 80), 0);
    let mut eval_at: Option<Instant> = None;
    let mut candidate: Option<(ScreenVerdict, Instant)> = None;
    loop {
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            () = cancel.cancelled() => break,
            next = subscription.next(READ_BYTES) => match next {
                Next::Data { data, .. } => {
                    let size = handle.size();
                    let (rows, cols) = parser.screen().size();
                    if (rows.get(), cols.get()) != (size.rows, size.cols) {
                        parser.set_size(nonzero(size.rows, 24), nonzero(size.cols, 80));
                    }
                    parser.process(&data);
                    eval_at.get_or_insert_with(|| Instant::now() + EVAL_DELAY);
                }
                Next::Skipped { .. } => {
                    eval_at.get_or_insert_with(|| Instant::now() + EVAL_DELAY);
                }
                Next::Exited(_) => {
                    // The last output (e.g. "No conversation found") counts at once.
                    if eval_at.is_some() {
                        let verdict = judge(&profile, parser.screen());
                        if verdict != *verdicts.borrow() {
                            verdicts.send_replace(verdict);
                        }
                    }
                    break;
                }
            },
            () = sleep_until(eval_at.unwrap_or(far)), if eval_at.is_some() => {
                eval_at = None;
                let verdict = judge(&profile, parser.screen());
                if verdict == *verdicts.borrow() {
                    candidate = None;
                } else if verdict.failure.is_some() || settle.is_zero() {
                    candidate = None;
                    verdicts.send_replace(verdict);
                } else if candidate.as_ref().is_none_or(|(c, _)| *c != verdict) {
                    candidate = Some((verdict, Instant::now() + settle));
                }
            },
            () = sleep_until(candidate.as_ref().map_or(far, |(_, at)| *at)), if candidate.is_some() => {
                if let Some((verdict, _)) = candidate.take() {
                    verdicts.send_replace(verdict);
                }
            },
        }
    }
}

/// The last rows with text (at most `max_rows`, joined by ` / `, cut to
/// [`LAST_WORDS_BYTES`]) of the screen that `output` leaves in a terminal of
/// `rows`×`cols`: what a program printed before it ended. `output` may start in
/// the middle of the program's output (a tail of the scrollback). Empty when
/// nothing is on screen.
pub fn last_words(output: &[u8], rows: u16, cols: u16, max_rows: usize) -> String {
    let rows = render(output, rows, cols);
    let mut lines: Vec<&str> = rows
        .iter()
        .rev()
        .map(|row| row.trim())
        .filter(|row| !row.is_empty())
        .take(max_rows)
        .collect();
    lines.reverse();
    truncate(&lines.join(" / "), LAST_WORDS_BYTES)
}

/// The rows of the screen that `output` leaves in a terminal of `rows`×`cols`
/// (a 0 takes the VT100's 24×80), as text with trailing blanks removed.
pub fn render(output: &[u8], rows: u16, cols: u16) -> Vec<String> {
    let mut parser = vt100::Parser::new(nonzero(rows, 24), nonzero(cols, 80), 0);
    parser.process(output);
    screen_rows(parser.screen())
}

/// Longest text [`last_words`] returns, in bytes.
pub const LAST_WORDS_BYTES: usize = 300;

fn nonzero(value: u16, default: u16) -> NonZeroU16 {
    NonZeroU16::new(value)
        .or_else(|| NonZeroU16::new(default))
        .unwrap_or(NonZeroU16::MIN)
}

/// The verdict of `profile`'s rules on `screen`.
pub fn judge(profile: &Profile, screen: &vt100::Screen) -> ScreenVerdict {
    let rows = screen_rows(screen);
    let failure = if profile.resume_failure_patterns.is_empty() {
        None
    } else {
        let text = rows.join("\n");
        profile.resume_failure_patterns.iter().find_map(|pattern| {
            pattern.find(&text).map(|m| {
                let start = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
                let end = text[m.start()..]
                    .find('\n')
                    .map_or(text.len(), |i| m.start() + i);
                truncate(
                    text[start..end].trim(),
                    super::activity::MAX_MATCHED_TEXT_BYTES,
                )
            })
        })
    };
    ScreenVerdict {
        found: evaluate(&profile.screen_rules, &rows),
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::activity::Activity;
    use crate::agent::profile::Profiles;

    #[test]
    fn last_words_are_the_last_rows_with_text() {
        // Claude Code 2.1's start-up failure offline, as printed (abridged).
        let output = b"\x1b[38;5;174mWelcome to Claude Code\x1b[39m\r\n\r\n\
            \x1b[2GUnable to connect to Anthropic services\r\n\r\n\
            \x1b[2GFailed to connect to api.anthropic.com: ENOTFOUND\r\n\r\n\
            \x1b[2GPlease check your internet connection.\r\n\x1b[?25h";
        assert_eq!(
            last_words(output, 24, 80, 3),
            "Unable to connect to Anthropic services / Failed to connect to \
             api.anthropic.com: ENOTFOUND / Please check your internet connection."
        );
        // A full-screen program that left its alternate screen: what it printed
        // after counts, not the screen it drew.
        let output = b"\x1b[?1049h\x1b[2J\x1b[Hdrawn UI\x1b[?1049lpanic: boom\r\n";
        assert_eq!(last_words(output, 24, 80, 3), "panic: boom");
        assert_eq!(last_words(b"\x1b[2J", 24, 80, 3), "");
        let long = "x".repeat(1000);
        assert_eq!(
            last_words(long.as_bytes(), 24, 200, 3).len(),
            LAST_WORDS_BYTES
        );
    }

    fn screen_of(bytes: &[u8]) -> vt100::Parser {
        let mut parser = vt100::Parser::new(nonzero(24, 24), nonzero(80, 80), 0);
        parser.process(bytes);
        parser
    }

    #[test]
    fn claude_screens() {
        let profiles = Profiles::builtin();
        let claude = profiles.get("claude").unwrap();
        let working = screen_of(
            "\x1b[2J\x1b[20;1H✻ Pondering… (3s · ↑ 1.2k tokens · esc to interrupt)\r\n\r\n╭──────╮\r\n│ >    │\r\n╰──────╯"
                .as_bytes(),
        );
        let verdict = judge(&claude, working.screen());
        assert_eq!(verdict.found.unwrap().activity, Activity::Working);
        let asking = screen_of(
            "\x1b[2J\x1b[12;1H│ Bash command\r\n│   rm -rf build\r\n│ Do you want to proceed?\r\n│ ❯ 1. Yes\r\n│   2. No, and tell Claude what to do differently (esc)\r\n"
                .as_bytes(),
        );
        let found = judge(&claude, asking.screen()).found.unwrap();
        assert_eq!(found.activity, Activity::WaitingForInput);
        assert_eq!(found.rule, "permission-prompt");
        let idle = screen_of(
            "\x1b[2J\x1b[18;1H● Done.\r\n\r\n╭──────────────╮\r\n│ >            │\r\n╰──────────────╯\r\n  ? for shortcuts"
                .as_bytes(),
        );
        assert_eq!(
            judge(&claude, idle.screen()).found.unwrap().activity,
            Activity::Idle
        );
        let missing = screen_of(b"No conversation found with session ID: 1234\r\n");
        assert_eq!(
            judge(&claude, missing.screen()).failure.as_deref(),
            Some("No conversation found with session ID: 1234")
        );
    }
}
