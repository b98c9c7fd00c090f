//! What an agent is doing (`Worker.Activity`) and why we think so
//! (`ActivityEvidence`), decided from its terminal screen and its transcript.
//!
//! The screen is the live source: every agent draws a spinner while it works, a
//! permission or question box when it waits for a person, and an input prompt when
//! its turn is over. Each profile describes these as [`ScreenRule`]s (a region of
//! the screen, a regular expression, a priority), kept in data files
//! (`server/profiles/*.toml`). The screen is the output of a VT parser (`vt100`)
//! fed with the PTY's bytes, so rules see what a person sees — not escape codes,
//! not text that was since overwritten.
//!
//! The transcript is the second source: an assistant line with a final
//! `stop_reason` ends a turn; a user line starts one. [`combine`] prefers a screen
//! match and falls back to the transcript.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::clock::Micros;

/// The activity of an agent worker. Stored as its upper-case name, the same as
/// `corral.v1.Worker.Activity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activity {
    /// Nothing matched (or the agent is not running).
    #[default]
    Unknown,
    /// Producing output or running tools.
    Working,
    /// A permission or question prompt is on screen.
    WaitingForInput,
    /// The turn is over; the agent waits for a prompt.
    Idle,
}

impl Activity {
    /// Every activity.
    pub const ALL: [Activity; 4] = [
        Activity::Unknown,
        Activity::Working,
        Activity::WaitingForInput,
        Activity::Idle,
    ];

    /// The stored name (`WAITING_FOR_INPUT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Unknown => "UNKNOWN",
            Activity::Working => "WORKING",
            Activity::WaitingForInput => "WAITING_FOR_INPUT",
            Activity::Idle => "IDLE",
        }
    }

    /// Parses a stored name (case-insensitive).
    pub fn parse(name: &str) -> Option<Activity> {
        Activity::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest `matched_text` kept in evidence, in bytes.
pub const MAX_MATCHED_TEXT_BYTES: usize = 200;

/// Why an activity was decided: which rule matched, from which source, on what
/// text, when. Stored as JSON in `workers.activity_evidence`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// `<profile>/<rule>` for screen rules, `transcript/<signal>` for the
    /// transcript, `corral/<reason>` for Corral's own (e.g. `corral/not-running`).
    pub rule: String,
    /// `screen`, `transcript` or `corral`.
    pub source: String,
    /// The text that matched, at most [`MAX_MATCHED_TEXT_BYTES`].
    pub matched_text: String,
    /// When it was decided (µs since the epoch).
    pub time: Micros,
}

/// An activity with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ActivityState {
    /// What the agent is doing.
    pub activity: Activity,
    /// Why Corral thinks so.
    pub evidence: Evidence,
}

/// Which rows of the screen a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Every visible row.
    Screen,
    /// The first N rows.
    Top(u16),
    /// The last N rows (where prompts and spinners live).
    Bottom(u16),
    /// The last N rows down to the last one that is not blank: where a program
    /// that prints line by line instead of drawing the whole screen (aider, with
    /// blank rows below its prompt until the screen has filled) has its cursor.
    Last(u16),
}

impl Region {
    /// Parses `screen`, `top:N`, `bottom:N` or `last:N`.
    pub fn parse(text: &str) -> Result<Region, String> {
        let rows = |n: &str| {
            n.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("region {text:?}: {n:?} is not a row count ≥ 1"))
        };
        match text.split_once(':') {
            None if text == "screen" => Ok(Region::Screen),
            Some(("top", n)) => Ok(Region::Top(rows(n)?)),
            Some(("bottom", n)) => Ok(Region::Bottom(rows(n)?)),
            Some(("last", n)) => Ok(Region::Last(rows(n)?)),
            _ => Err(format!(
                "region {text:?} is not \"screen\", \"top:N\", \"bottom:N\" or \"last:N\""
            )),
        }
    }

    /// The rows of `rows` this region covers.
    fn select<'a>(&self, rows: &'a [String]) -> &'a [String] {
        match *self {
            Region::Screen => rows,
            Region::Top(n) => &rows[..rows.len().min(usize::from(n))],
            Region::Bottom(n) => &rows[rows.len().saturating_sub(usize::from(n))..],
            Region::Last(n) => {
                let end = rows
                    .iter()
                    .rposition(|r| !r.is_empty())
                    .map_or(0, |i| i + 1);
                &rows[end.saturating_sub(usize::from(n))..end]
            }
        }
    }
}

/// One screen rule of a profile.
#[derive(Clone, Debug)]
pub struct ScreenRule {
    /// Short name, unique in its profile (`permission-prompt`).
    pub name: String,
    /// The activity a match means.
    pub activity: Activity,
    /// The rows searched.
    pub region: Region,
    /// Searched in the region's rows joined with `\n`, trailing blanks removed.
    pub pattern: Regex,
    /// The highest priority among matching rules wins; ties go to the first rule.
    pub priority: i32,
}

/// A rule that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    /// The rule's name.
    pub rule: String,
    /// The rule's activity.
    pub activity: Activity,
    /// The line that matched, trimmed to [`MAX_MATCHED_TEXT_BYTES`].
    pub matched_text: String,
}

/// The visible rows of a screen as text, trailing blanks removed.
pub fn screen_rows(screen: &vt100::Screen) -> Vec<String> {
    let (_, cols) = screen.size();
    screen
        .rows(0, cols.get())
        .map(|row| row.trim_end().to_owned())
        .collect()
}

/// The highest-priority rule matching `rows` (a screen's rows, top first).
pub fn evaluate(rules: &[ScreenRule], rows: &[String]) -> Option<RuleMatch> {
    let mut best: Option<(&ScreenRule, String)> = None;
    for rule in rules {
        if best
            .as_ref()
            .is_some_and(|(winner, _)| winner.priority >= rule.priority)
        {
            continue;
        }
        let text = rule.region.select(rows).join("\n");
        if let Some(found) = rule.pattern.find(&text) {
            best = Some((rule, line_around(&text, found.start())));
        }
    }
    best.map(|(rule, matched_text)| RuleMatch {
        rule: rule.name.clone(),
        activity: rule.activity,
        matched_text,
    })
}

/// The line of `text` where a match starting at byte `start` begins,
/// trimmed and cut to [`MAX_MATCHED_TEXT_BYTES`].
fn line_around(text: &str, start: usize) -> String {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    truncate(text[line_start..line_end].trim(), MAX_MATCHED_TEXT_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// What the transcript says about the current turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TurnSignal {
    /// Nothing read yet.
    #[default]
    None,
    /// The last relevant line started or continued a turn (a prompt, a tool use or
    /// result, an assistant line without a final stop reason).
    Open,
    /// The last relevant line ended a turn (an assistant `stop_reason`).
    Ended,
}

/// The activity from a screen match (preferred) or, when no rule matched, from the
/// transcript: an open turn is WORKING, an ended one IDLE, nothing UNKNOWN.
pub fn combine(
    profile: &str,
    screen: Option<&RuleMatch>,
    turn: TurnSignal,
    now: Micros,
) -> ActivityState {
    if let Some(found) = screen {
        return ActivityState {
            activity: found.activity,
            evidence: Evidence {
                rule: format!("{profile}/{}", found.rule),
                source: "screen".into(),
                matched_text: found.matched_text.clone(),
                time: now,
            },
        };
    }
    let (activity, rule) = match turn {
        TurnSignal::None => (Activity::Unknown, "corral/no-rule-matched"),
        TurnSignal::Open => (Activity::Working, "transcript/turn-open"),
        TurnSignal::Ended => (Activity::Idle, "transcript/stop_reason"),
    };
    ActivityState {
        activity,
        evidence: Evidence {
            rule: rule.into(),
            source: if turn == TurnSignal::None {
                "corral".into()
            } else {
                "transcript".into()
            },
            matched_text: String::new(),
            time: now,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        name: &str,
        activity: Activity,
        region: &str,
        pattern: &str,
        priority: i32,
    ) -> ScreenRule {
        ScreenRule {
            name: name.into(),
            activity,
            region: Region::parse(region).unwrap(),
            pattern: Regex::new(pattern).unwrap(),
            priority,
        }
    }

    fn screen(bytes: &[u8], rows: u16, cols: u16) -> Vec<String> {
        crate::agent::screen::render(bytes, rows, cols)
    }

    #[test]
    fn regions_parse() {
        assert_eq!(Region::parse("screen"), Ok(Region::Screen));
        assert_eq!(Region::parse("bottom:5"), Ok(Region::Bottom(5)));
        assert_eq!(Region::parse("top:2"), Ok(Region::Top(2)));
        assert_eq!(Region::parse("last:3"), Ok(Region::Last(3)));
        assert!(Region::parse("last:x").is_err());
        assert!(Region::parse("bottom:0").is_err());
        assert!(Region::parse("middle:3").is_err());
    }

    #[test]
    fn highest_priority_match_wins() {
        let rules = vec![
            rule("prompt", Activity::Idle, "bottom:3", r"^>", 10),
            rule(
                "ask",
                Activity::WaitingForInput,
                "screen",
                r"Do you want to proceed\?",
                30,
            ),
            rule(
                "spin",
                Activity::Working,
                "bottom:3",
                r"esc to interrupt",
                20,
            ),
        ];
        let rows = screen(
            b"Bash(rm -rf build)\r\nDo you want to proceed?\r\n\x1b[5;1H> ",
            6,
            40,
        );
        let found = evaluate(&rules, &rows).unwrap();
        assert_eq!(found.activity, Activity::WaitingForInput);
        assert_eq!(found.rule, "ask");
        assert_eq!(found.matched_text, "Do you want to proceed?");
    }

    #[test]
    fn rules_see_the_screen_not_the_bytes() {
        // The spinner line is drawn, then erased (CR + EL) and replaced by the
        // prompt: the bytes still contain "esc to interrupt", the screen does not.
        let rules = vec![
            rule(
                "spin",
                Activity::Working,
                "bottom:2",
                r"esc to interrupt",
                20,
            ),
            rule("prompt", Activity::Idle, "bottom:2", r"(?m)^> ?$", 10),
        ];
        let rows = screen(b"\x1b[4;1H* Working (esc to interrupt)\r\x1b[2K> ", 4, 40);
        assert_eq!(evaluate(&rules, &rows).unwrap().activity, Activity::Idle);
        // A region excludes rows outside it.
        let rows = screen(b"esc to interrupt\r\n\r\n\r\n\r\n> ", 5, 40);
        assert_eq!(evaluate(&rules, &rows).unwrap().activity, Activity::Idle);
    }

    #[test]
    fn no_match_falls_back_to_the_transcript() {
        let state = combine("claude", None, TurnSignal::Ended, 5);
        assert_eq!(state.activity, Activity::Idle);
        assert_eq!(state.evidence.rule, "transcript/stop_reason");
        assert_eq!(state.evidence.source, "transcript");
        let state = combine("claude", None, TurnSignal::None, 5);
        assert_eq!(state.activity, Activity::Unknown);
        let found = RuleMatch {
            rule: "spinner".into(),
            activity: Activity::Working,
            matched_text: "esc to interrupt".into(),
        };
        let state = combine("claude", Some(&found), TurnSignal::Ended, 5);
        assert_eq!(state.activity, Activity::Working);
        assert_eq!(state.evidence.rule, "claude/spinner");
    }

    #[test]
    fn matched_text_is_bounded() {
        let long = "x".repeat(300) + "é";
        assert_eq!(truncate(&long, 200).len(), 200);
        assert_eq!(truncate("é", 1), "");
    }
}
