//! Agent profiles: server-side recipes for starting an agent CLI (DESIGN.md §7:
//! "agent commands come from server-side profiles, not from clients").
//!
//! A profile says which program to run, with which arguments and environment, how
//! to start it with a conversation id Corral chose, how to resume a conversation,
//! which models and extra arguments a client may ask for, where the agent writes
//! its transcript and in which format, and which screen rules tell its activity.
//!
//! The built-in profiles are data files in the repository (`server/profiles/*.toml`,
//! compiled in): `claude`, `codex`, `gemini`, `aider` and `custom`. A file given with
//! `--profiles` adds profiles or overrides fields of built-in ones:
//!
//! ```toml
//! [profiles.claude]
//! command = "/opt/claude/bin/claude"     # every other field stays built-in
//!
//! [profiles.reviewer]                    # a new profile: `command` is required
//! command = "my-agent"
//! resume_args = ["--resume", "{session_id}"]
//! ```
//!
//! Templates in arguments and paths: `{session_id}` (the agent's conversation id),
//! `{session_id8}` (its first 8 characters, by which Gemini CLI names its chat
//! files; the whole id is then read from the file's first line), `{model}`,
//! `{home}` (the worker's `HOME`), `{cwd}` (the session's directory), `{cwd_slug}`
//! (the directory as Claude Code names its project folder: every character that is
//! not an ASCII letter or digit replaced by `-`) and `{env:NAME}` (variable `NAME`
//! of the agent's environment).
//!
//! `transcript.dir` may be a list of templates: the first one whose `{env:NAME}`
//! variables are all set (and not empty) is used, and the last may use none. The
//! built-in `claude` profile looks in `{env:CLAUDE_CONFIG_DIR}/projects/{cwd_slug}`
//! before `{home}/.claude/projects/{cwd_slug}`, as Claude Code itself does;
//! `codex` in `{env:CODEX_HOME}/sessions` before `{home}/.codex/sessions`;
//! `gemini` in `{env:GEMINI_CLI_HOME}/.gemini/tmp` before `{home}/.gemini/tmp`;
//! `aider` reads `{cwd}/.aider.chat.history.md`, the one history of the directory
//! (format `aider-markdown`, whose `transcript.file` names no id).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use super::activity::{Activity, Region, ScreenRule};

/// The built-in profiles, one TOML file each.
const BUILTIN: &[(&str, &str)] = &[
    ("claude.toml", include_str!("../../profiles/claude.toml")),
    ("codex.toml", include_str!("../../profiles/codex.toml")),
    ("gemini.toml", include_str!("../../profiles/gemini.toml")),
    ("aider.toml", include_str!("../../profiles/aider.toml")),
    ("custom.toml", include_str!("../../profiles/custom.toml")),
];

/// Most extra arguments a client may pass, and bytes per argument.
pub const MAX_EXTRA_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;
/// Longest model name, in bytes.
const MAX_MODEL_BYTES: usize = 200;
/// Longest directory slug Claude Code uses before it shortens the name.
const MAX_SLUG_CHARS: usize = 200;

/// A profile as written in TOML: every field optional, so an override file can
/// change just a few fields of a built-in profile.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    description: Option<String>,
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    unset_env: Option<Vec<String>>,
    models: Option<Vec<String>>,
    model_args: Option<Vec<String>>,
    start_args: Option<Vec<String>>,
    resume_args: Option<Vec<String>>,
    resume_latest_args: Option<Vec<String>>,
    mode_args_first: Option<bool>,
    bracketed_paste: Option<bool>,
    resume_failure_patterns: Option<Vec<String>>,
    transcript: Option<RawTranscript>,
    extra_args: Option<Vec<RawExtraArg>>,
    screen_rules: Option<Vec<RawScreenRule>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTranscript {
    format: String,
    dir: OneOrMany,
    file: String,
    #[serde(default)]
    recursive: bool,
}

/// A string, or a list of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::One(String::new())
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtraArg {
    flag: String,
    #[serde(default)]
    value: bool,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScreenRule {
    name: String,
    activity: String,
    region: String,
    pattern: String,
    priority: i32,
}

/// The `--profiles` file: `[profiles.<name>]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

impl RawProfile {
    /// `self` with every field `over` sets replaced.
    fn merged(mut self, over: RawProfile) -> RawProfile {
        macro_rules! take {
            ($($field:ident),*) => { $( if over.$field.is_some() { self.$field = over.$field; } )* };
        }
        take!(
            name,
            description,
            command,
            args,
            env,
            unset_env,
            models,
            model_args,
            start_args,
            resume_args,
            resume_latest_args,
            mode_args_first,
            bracketed_paste,
            resume_failure_patterns,
            transcript,
            extra_args,
            screen_rules
        );
        self
    }
}

/// Transcript formats Corral reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranscriptFormat {
    /// Claude Code's JSONL (`~/.claude/projects/<slug>/<session-id>.jsonl`).
    ClaudeJsonl,
    /// Codex CLI's rollout JSONL (`~/.codex/sessions/YYYY/MM/DD/rollout-*-<id>.jsonl`).
    CodexJsonl,
    /// Gemini CLI's chat JSONL
    /// (`~/.gemini/tmp/<project>/chats/session-<YYYY-MM-DDTHH-MM>-<id8>.jsonl`).
    GeminiJsonl,
    /// aider's Markdown chat history (`.aider.chat.history.md`, one file per
    /// directory, every chat appended to it).
    AiderMarkdown,
}

impl TranscriptFormat {
    /// The name used in profiles and in `AgentProfile.transcript_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            TranscriptFormat::ClaudeJsonl => "claude-jsonl",
            TranscriptFormat::CodexJsonl => "codex-jsonl",
            TranscriptFormat::GeminiJsonl => "gemini-jsonl",
            TranscriptFormat::AiderMarkdown => "aider-markdown",
        }
    }

    fn parse(name: &str) -> Option<TranscriptFormat> {
        match name {
            "claude-jsonl" => Some(TranscriptFormat::ClaudeJsonl),
            "codex-jsonl" => Some(TranscriptFormat::CodexJsonl),
            "gemini-jsonl" => Some(TranscriptFormat::GeminiJsonl),
            "aider-markdown" => Some(TranscriptFormat::AiderMarkdown),
            _ => None,
        }
    }
}

/// Where an agent writes its transcript.
#[derive(Clone, Debug)]
pub struct TranscriptSpec {
    /// How its lines are read.
    pub format: TranscriptFormat,
    /// Directory templates (`{env:CLAUDE_CONFIG_DIR}/projects/{cwd_slug}`,
    /// `{home}/.claude/projects/{cwd_slug}`): the first whose `{env:NAME}`
    /// variables are all set is used; the last uses none. See [`Self::dir`].
    pub dirs: Vec<String>,
    /// File name template with `{session_id}` or `{session_id8}`; `*` matches
    /// anything (`rollout-*-{session_id}.jsonl`, `session-*-{session_id8}.jsonl`).
    /// For [`TranscriptFormat::AiderMarkdown`], the history's name without an id
    /// (`.aider.chat.history.md`).
    pub file: String,
    /// Look in subdirectories of `dir` too (Codex files by date).
    pub recursive: bool,
}

impl TranscriptSpec {
    /// The directory the transcripts are in, for `vars`: the first of
    /// [`dirs`](Self::dirs) whose `{env:NAME}` variables are all set and not
    /// empty in `vars.env`, expanded.
    pub fn dir(&self, vars: &Vars<'_>) -> PathBuf {
        let chosen = self
            .dirs
            .iter()
            .find(|template| env_names(template).all(|name| !vars.var(name).is_empty()))
            .or(self.dirs.last())
            .map(String::as_str)
            .unwrap_or_default();
        PathBuf::from(expand(chosen, vars))
    }
}

/// An extra argument a client may pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraArg {
    /// The flag, e.g. `--permission-mode`.
    pub flag: String,
    /// Whether the flag takes a value (`--flag value` or `--flag=value`).
    pub takes_value: bool,
    /// The values allowed; empty means any.
    pub values: Vec<String>,
}

/// A validated profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The profile's name (`claude`), what clients choose.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// The program, looked up in the worker's `PATH` when it has no `/`.
    pub command: String,
    /// Arguments always passed.
    pub args: Vec<String>,
    /// Environment set for the agent (over the worker's).
    pub env: BTreeMap<String, String>,
    /// Variables removed from the agent's environment.
    pub unset_env: Vec<String>,
    /// Models a client may choose; empty means any.
    pub models: Vec<String>,
    /// How a model is passed (`["--model", "{model}"]`); empty: no model choice.
    pub model_args: Vec<String>,
    /// How to start a new conversation with an id Corral chose; empty: the agent
    /// picks its own id (learned from its transcript).
    pub start_args: Vec<String>,
    /// How to resume conversation `{session_id}`; empty: not by id.
    pub resume_args: Vec<String>,
    /// How to continue the newest conversation of the directory when the id is
    /// unknown; empty: not supported.
    pub resume_latest_args: Vec<String>,
    /// Start/resume arguments come right after the program (a subcommand such as
    /// `codex resume`), not after the other arguments.
    pub mode_args_first: bool,
    /// SendMessage pastes with bracketed paste (`ESC [200~ … ESC [201~`).
    pub bracketed_paste: bool,
    /// Screen text meaning a resume failed (e.g. "No conversation found").
    pub resume_failure_patterns: Vec<Regex>,
    /// Where the agent writes its transcript; `None`: not read.
    pub transcript: Option<TranscriptSpec>,
    /// The extra arguments a client may pass.
    pub extra_args: Vec<ExtraArg>,
    /// The rules that tell the agent's activity from its screen.
    pub screen_rules: Vec<ScreenRule>,
}

/// How an agent is launched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// A new conversation; `session_id` is set when the profile starts with an id
    /// chosen by Corral.
    Start {
        /// The id given with `start_args`.
        session_id: Option<String>,
    },
    /// Continue conversation `session_id`.
    Resume {
        /// The conversation to continue.
        session_id: String,
    },
    /// Continue the newest conversation of the working directory.
    ResumeLatest,
}

/// Values for the templates of a profile.
#[derive(Clone, Debug, Default)]
pub struct Vars<'a> {
    /// `{session_id}`: the agent's conversation id.
    pub session_id: &'a str,
    /// `{model}`.
    pub model: &'a str,
    /// `{home}`: the worker's `HOME`.
    pub home: &'a str,
    /// `{cwd}`: the session's directory (also gives `{cwd_slug}`).
    pub cwd: &'a str,
    /// `{env:NAME}`: the agent's environment, as `(NAME, value)` pairs.
    pub env: &'a [(String, String)],
}

impl Vars<'_> {
    /// Variable `name` of [`env`](Self::env); empty when it is not set.
    pub fn var(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// `NAME` when `placeholder` (braces included) is `{env:NAME}`.
fn env_placeholder(placeholder: &str) -> Option<&str> {
    placeholder
        .strip_prefix("{env:")
        .and_then(|p| p.strip_suffix('}'))
}

/// The names of the `{env:NAME}` placeholders of `template`.
fn env_names(template: &str) -> impl Iterator<Item = &str> {
    template
        .split("{env:")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

/// Claude Code's name for the project folder of `cwd`: every character that is
/// not an ASCII letter or digit becomes `-` (runs are not collapsed), cut to 200
/// characters (Claude Code then appends a hash of the path, which Corral does not
/// reproduce; see `transcript::locate`).
pub fn cwd_slug(cwd: &str) -> String {
    cwd.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(MAX_SLUG_CHARS)
        .collect()
}

/// Fills the placeholders of `template` in one pass (a value is never expanded
/// again); an `{env:NAME}` that is not set becomes empty, and anything else in
/// braces is kept as it is.
pub fn expand(template: &str, vars: &Vars<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let from = &rest[start..];
        let Some(end) = from.find('}') else {
            rest = from;
            break;
        };
        let placeholder = &from[..=end];
        match placeholder {
            "{session_id}" => out.push_str(vars.session_id),
            "{session_id8}" => out.extend(vars.session_id.chars().take(8)),
            "{model}" => out.push_str(vars.model),
            "{home}" => out.push_str(vars.home),
            "{cwd}" => out.push_str(vars.cwd),
            "{cwd_slug}" => out.push_str(&cwd_slug(vars.cwd)),
            _ => match env_placeholder(placeholder) {
                Some(name) => out.push_str(vars.var(name)),
                None => out.push_str(placeholder),
            },
        }
        rest = &from[end + 1..];
    }
    out.push_str(rest);
    out
}

const PLACEHOLDERS: &[&str] = &[
    "{session_id}",
    "{session_id8}",
    "{model}",
    "{home}",
    "{cwd}",
    "{cwd_slug}",
];

/// Whether `name` is a valid environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks that `template` uses only known placeholders.
fn check_template(field: &str, template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("{field}: unclosed '{{' in {template:?}"));
        };
        let placeholder = &rest[start..start + len + 1];
        let known = match env_placeholder(placeholder) {
            Some(name) => is_env_name(name),
            None => PLACEHOLDERS.contains(&placeholder),
        };
        if !known {
            return Err(format!(
                "{field}: unknown placeholder {placeholder} in {template:?} (known: {}, {{env:NAME}})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[start + len + 1..];
    }
    Ok(())
}

impl Profile {
    /// Validates a raw profile.
    fn build(name: &str, raw: RawProfile) -> Result<Profile, String> {
        let at = |what: &str| format!("profile {name:?}: {what}");
        let command = raw.command.unwrap_or_default();
        if command.trim().is_empty() {
            return Err(at("`command` is required"));
        }
        let list = |field: &str, items: Option<Vec<String>>| -> Result<Vec<String>, String> {
            let items = items.unwrap_or_default();
            for item in &items {
                check_template(&at(field), item)?;
            }
            Ok(items)
        };
        let args = list("args", raw.args)?;
        let model_args = list("model_args", raw.model_args)?;
        let start_args = list("start_args", raw.start_args)?;
        let resume_args = list("resume_args", raw.resume_args)?;
        let resume_latest_args = list("resume_latest_args", raw.resume_latest_args)?;
        for (field, items) in [("start_args", &start_args), ("resume_args", &resume_args)] {
            if !items.is_empty() && !items.iter().any(|a| a.contains("{session_id}")) {
                return Err(at(&format!("`{field}` must contain {{session_id}}")));
            }
        }
        if !model_args.is_empty() && !model_args.iter().any(|a| a.contains("{model}")) {
            return Err(at("`model_args` must contain {model}"));
        }
        let resume_failure_patterns = raw
            .resume_failure_patterns
            .unwrap_or_default()
            .iter()
            .map(|p| Regex::new(p).map_err(|e| at(&format!("resume_failure_patterns {p:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let transcript = match raw.transcript {
            None => None,
            Some(t) => {
                let format = TranscriptFormat::parse(&t.format).ok_or_else(|| {
                    at(&format!(
                        "transcript.format {:?} is not claude-jsonl, codex-jsonl, gemini-jsonl or aider-markdown",
                        t.format
                    ))
                })?;
                let dirs = t.dir.into_vec();
                for dir in &dirs {
                    check_template(&at("transcript.dir"), dir)?;
                }
                match dirs.last() {
                    None => return Err(at("transcript.dir must not be an empty list")),
                    Some(last) if env_names(last).next().is_some() => {
                        return Err(at(
                            "the last of transcript.dir must not use {env:NAME}: it is the one used when no variable is set",
                        ));
                    }
                    Some(_) => {}
                }
                check_template(&at("transcript.file"), &t.file)?;
                let names_id = t.file.contains("{session_id}") || t.file.contains("{session_id8}");
                // aider keeps one history per directory; its chats are told apart
                // inside the file.
                let one_per_directory = format == TranscriptFormat::AiderMarkdown;
                if t.file.contains('/') || names_id == one_per_directory {
                    return Err(at(if one_per_directory {
                        "transcript.file of format aider-markdown must be a file name without {session_id}: the history of the directory"
                    } else {
                        "transcript.file must be a file name containing {session_id} or {session_id8}"
                    }));
                }
                Some(TranscriptSpec {
                    format,
                    dirs,
                    file: t.file,
                    recursive: t.recursive,
                })
            }
        };
        let extra_args = raw
            .extra_args
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                if !e.flag.starts_with('-') || e.flag.contains('=') {
                    return Err(at(&format!(
                        "extra_args flag {:?} must start with '-' and have no '='",
                        e.flag
                    )));
                }
                Ok(ExtraArg {
                    takes_value: e.value || !e.values.is_empty(),
                    flag: e.flag,
                    values: e.values,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let screen_rules = raw
            .screen_rules
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let activity = Activity::parse(&r.activity)
                    .filter(|a| *a != Activity::Unknown)
                    .ok_or_else(|| {
                        at(&format!(
                            "screen rule {:?}: activity {:?} is not WORKING, WAITING_FOR_INPUT or IDLE",
                            r.name, r.activity
                        ))
                    })?;
                let region = Region::parse(&r.region)
                    .map_err(|e| at(&format!("screen rule {:?}: {e}", r.name)))?;
                let pattern = Regex::new(&r.pattern).map_err(|e| {
                    at(&format!("screen rule {:?}: pattern {:?}: {e}", r.name, r.pattern))
                })?;
                Ok(ScreenRule {
                    name: r.name,
                    activity,
                    region,
                    pattern,
                    priority: r.priority,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Profile {
            name: name.to_owned(),
            description: raw.description.unwrap_or_default(),
            command,
            args,
            env: raw.env.unwrap_or_default(),
            unset_env: raw.unset_env.unwrap_or_default(),
            models: raw.models.unwrap_or_default(),
            model_args,
            start_args,
            resume_args,
            resume_latest_args,
            mode_args_first: raw.mode_args_first.unwrap_or(false),
            bracketed_paste: raw.bracketed_paste.unwrap_or(false),
            resume_failure_patterns,
            transcript,
            extra_args,
            screen_rules,
        })
    }

    /// True when Corral chooses the conversation id at start.
    pub fn starts_with_id(&self) -> bool {
        !self.start_args.is_empty()
    }

    /// True when the agent can continue a conversation (by id or the newest).
    pub fn resumable(&self) -> bool {
        !self.resume_args.is_empty() || !self.resume_latest_args.is_empty()
    }

    /// Checks a client's model choice. Errors are reasons for INVALID_ARGUMENT.
    pub fn check_model(&self, model: &str) -> Result<(), String> {
        if model.is_empty() {
            return Ok(());
        }
        if self.model_args.is_empty() {
            return Err(format!(
                "profile {:?} does not take a model; leave it empty",
                self.name
            ));
        }
        if model.len() > MAX_MODEL_BYTES
            || model.starts_with('-')
            || model.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "{model:?} is not a model name (at most {MAX_MODEL_BYTES} bytes, no spaces or control characters, not starting with '-')"
            ));
        }
        if !self.models.is_empty() && !self.models.iter().any(|m| m == model) {
            return Err(format!(
                "profile {:?} does not offer model {model:?}; choose one of: {}",
                self.name,
                self.models.join(", ")
            ));
        }
        Ok(())
    }

    /// Checks a client's extra arguments against the profile's allowed flags.
    /// Errors are reasons for INVALID_ARGUMENT naming the argument.
    pub fn check_extra_args(&self, args: &[String]) -> Result<(), String> {
        if args.len() > MAX_EXTRA_ARGS {
            return Err(format!(
                "{} extra arguments; the limit is {MAX_EXTRA_ARGS}",
                args.len()
            ));
        }
        for arg in args {
            if arg.len() > MAX_ARG_BYTES || arg.contains('\0') {
                return Err(format!(
                    "argument {:?} is longer than {MAX_ARG_BYTES} bytes or contains NUL",
                    super::activity::truncate(arg, 40)
                ));
            }
        }
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with('-') => (flag, Some(value)),
                _ => (arg.as_str(), None),
            };
            let Some(allowed) = self.extra_args.iter().find(|e| e.flag == flag) else {
                return Err(format!(
                    "{arg:?} is not allowed by profile {:?}; allowed: {}",
                    self.name,
                    self.describe_extra_args()
                ));
            };
            let value = match (allowed.takes_value, inline) {
                (false, None) => continue,
                (false, Some(_)) => {
                    return Err(format!("{flag} takes no value"));
                }
                (true, Some(value)) => value,
                (true, None) => rest
                    .next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{flag} needs a value"))?,
            };
            if !allowed.values.is_empty() && !allowed.values.iter().any(|v| v == value) {
                return Err(format!(
                    "{flag} {value:?} is not allowed; choose one of: {}",
                    allowed.values.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `--flag <a|b>, --other` for messages.
    fn describe_extra_args(&self) -> String {
        if self.extra_args.is_empty() {
            return "none".into();
        }
        self.extra_args
            .iter()
            .map(|e| match (e.takes_value, e.values.is_empty()) {
                (false, _) => e.flag.clone(),
                (true, true) => format!("{} <value>", e.flag),
                (true, false) => format!("{} <{}>", e.flag, e.values.join("|")),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The argv of a launch: the program, then (with `mode_args_first`) the
    /// start/resume arguments, the profile's arguments, the model's, the client's
    /// extra arguments, then (otherwise) the start/resume arguments.
    pub fn argv(
        &self,
        launch: &Launch,
        model: &str,
        extra_args: &[String],
        vars: &Vars<'_>,
    ) -> Vec<String> {
        let session_id = match launch {
            Launch::Start { session_id } => session_id.as_deref().unwrap_or(""),
            Launch::Resume { session_id } => session_id,
            Launch::ResumeLatest => "",
        };
        let vars = Vars {
            session_id,
            model,
            ..vars.clone()
        };
        let mode: &[String] = match launch {
            Launch::Start {
                session_id: Some(_),
            } => &self.start_args,
            Launch::Start { session_id: None } => &[],
            Launch::Resume { .. } => &self.resume_args,
            Launch::ResumeLatest => &self.resume_latest_args,
        };
        let mode = mode.iter().map(|a| expand(a, &vars));
        let mut argv = vec![self.command.clone()];
        let mut rest: Vec<String> = self.args.iter().map(|a| expand(a, &vars)).collect();
        if !model.is_empty() {
            rest.extend(self.model_args.iter().map(|a| expand(a, &vars)));
        }
        rest.extend(extra_args.iter().cloned());
        if self.mode_args_first {
            argv.extend(mode);
            argv.extend(rest);
        } else {
            argv.extend(rest);
            argv.extend(mode);
        }
        argv
    }

    /// The transcript directory for these values.
    pub fn transcript_dir(&self, vars: &Vars<'_>) -> Option<PathBuf> {
        self.transcript.as_ref().map(|t| t.dir(vars))
    }
}

/// The profiles a server offers.
#[derive(Clone, Debug)]
pub struct Profiles {
    by_name: BTreeMap<String, Arc<Profile>>,
}

impl Profiles {
    /// The built-in profiles.
    pub fn builtin() -> Profiles {
        Profiles::from_sources(None).unwrap_or_else(|err| {
            // The built-in files are part of the build and covered by tests.
            tracing::error!(%err, "a built-in agent profile is invalid");
            Profiles {
                by_name: BTreeMap::new(),
            }
        })
    }

    /// The built-in profiles with the file at `path` (TOML, `[profiles.<name>]`
    /// tables) merged over them. Errors say which file, profile and field.
    pub fn load(path: Option<&Path>) -> Result<Profiles, String> {
        let overrides =
            match path {
                None => None,
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read the profiles file {}: {e}", path.display())
                })?),
            };
        Profiles::from_sources(overrides.as_deref()).map_err(|e| match path {
            Some(path) => format!("{}: {e}", path.display()),
            None => e,
        })
    }

    /// Built-ins plus `overrides` (the text of a profiles file).
    pub fn from_sources(overrides: Option<&str>) -> Result<Profiles, String> {
        let mut raw: BTreeMap<String, RawProfile> = BTreeMap::new();
        for (file, text) in BUILTIN {
            let profile: RawProfile =
                toml::from_str(text).map_err(|e| format!("built-in {file}: {e}"))?;
            let name = profile
                .name
                .clone()
                .ok_or_else(|| format!("built-in {file}: `name` is required"))?;
            raw.insert(name, profile);
        }
        if let Some(text) = overrides {
            let file: ProfilesFile = toml::from_str(text).map_err(|e| e.to_string())?;
            for (name, over) in file.profiles {
                crate::domain::names::validate_display_name("profile", &name)
                    .map_err(|e| format!("profile name {name:?}: {}", e.reason))?;
                let merged = match raw.remove(&name) {
                    Some(base) => base.merged(over),
                    None => over,
                };
                raw.insert(name, merged);
            }
        }
        let by_name = raw
            .into_iter()
            .map(|(name, raw)| Ok((name.clone(), Arc::new(Profile::build(&name, raw)?))))
            .collect::<Result<_, String>>()?;
        Ok(Profiles { by_name })
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Profile>> {
        self.by_name.get(name).cloned()
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.by_name.values()
    }

    /// The names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            session_id: "",
            model: "",
            home: "/home/me",
            cwd: "/srv/my_app.v2",
            env: &[],
        }
    }

    #[test]
    fn builtin_profiles_are_valid() {
        let profiles = Profiles::from_sources(None).unwrap();
        assert_eq!(
            profiles.names(),
            vec!["aider", "claude", "codex", "custom", "gemini"]
        );
        let claude = profiles.get("claude").unwrap();
        assert!(claude.starts_with_id() && claude.resumable());
        assert!(claude.unset_env.contains(&"CLAUDECODE".to_string()));
        assert_eq!(
            claude.transcript.as_ref().unwrap().format,
            TranscriptFormat::ClaudeJsonl
        );
        assert!(!claude.screen_rules.is_empty());
        assert!(!profiles.get("custom").unwrap().resumable());
    }

    #[test]
    fn claude_starts_with_an_id_and_resumes_it_never_with_continue() {
        let profiles = Profiles::builtin();
        let claude = profiles.get("claude").unwrap();
        let id = "0b6f3c1e-8f6a-4c3e-9a51-3f1c2f4f9d10".to_string();
        let start = claude.argv(
            &Launch::Start {
                session_id: Some(id.clone()),
            },
            "opus",
            &["--permission-mode".into(), "plan".into()],
            &vars(),
        );
        assert_eq!(
            start,
            vec![
                "claude",
                "--model",
                "opus",
                "--permission-mode",
                "plan",
                "--session-id",
                &id
            ]
        );
        let resume = claude.argv(
            &Launch::Resume {
                session_id: id.clone(),
            },
            "",
            &[],
            &vars(),
        );
        assert_eq!(resume, vec!["claude", "--resume", &id]);
        assert!(!resume.iter().any(|a| a == "--continue"));
    }

    #[test]
    fn codex_resume_is_a_subcommand_first() {
        let profiles = Profiles::builtin();
        let codex = profiles.get("codex").unwrap();
        let argv = codex.argv(
            &Launch::Resume {
                session_id: "abc".into(),
            },
            "o3",
            &[],
            &vars(),
        );
        assert_eq!(argv, vec!["codex", "resume", "abc", "--model", "o3"]);
        let gemini = profiles.get("gemini").unwrap();
        let argv = gemini.argv(&Launch::ResumeLatest, "", &[], &vars());
        assert_eq!(argv, vec!["gemini", "--resume", "latest"]);
    }

    #[test]
    fn extra_args_must_be_allowed() {
        let profiles = Profiles::builtin();
        let claude = profiles.get("claude").unwrap();
        assert!(
            claude
                .check_extra_args(&["--permission-mode=acceptEdits".into(), "--verbose".into()])
                .is_ok()
        );
        assert!(
            claude
                .check_extra_args(&["--add-dir".into(), "/tmp/x".into()])
                .is_ok()
        );
        let err = claude.check_extra_args(&["--continue".into()]).unwrap_err();
        assert!(
            err.contains("not allowed") && err.contains("--permission-mode"),
            "{err}"
        );
        let err = claude
            .check_extra_args(&["--permission-mode".into(), "yolo".into()])
            .unwrap_err();
        assert!(err.contains("choose one of"), "{err}");
        assert!(claude.check_extra_args(&["--add-dir".into()]).is_err());
        assert!(claude.check_extra_args(&["--verbose=1".into()]).is_err());
        // A shell would not help either: arguments are never joined into a string.
        assert!(claude.check_extra_args(&["; rm -rf /".into()]).is_err());
    }

    #[test]
    fn models_are_checked() {
        let profiles =
            Profiles::from_sources(Some("[profiles.claude]\nmodels = [\"opus\", \"sonnet\"]\n"))
                .unwrap();
        let claude = profiles.get("claude").unwrap();
        assert!(claude.check_model("opus").is_ok());
        assert!(claude.check_model("").is_ok());
        assert!(
            claude
                .check_model("haiku")
                .unwrap_err()
                .contains("opus, sonnet")
        );
        assert!(claude.check_model("-rf").is_err());
        assert!(profiles.get("custom").unwrap().check_model("x").is_err());
    }

    #[test]
    fn overrides_merge_field_by_field_and_add_profiles() {
        let profiles = Profiles::from_sources(Some(
            r#"
[profiles.claude]
command = "/opt/fake-claude"

[profiles.reviewer]
command = "review-bot"
resume_args = ["--thread", "{session_id}"]
"#,
        ))
        .unwrap();
        let claude = profiles.get("claude").unwrap();
        assert_eq!(claude.command, "/opt/fake-claude");
        assert_eq!(claude.resume_args, vec!["--resume", "{session_id}"]);
        assert!(!claude.screen_rules.is_empty());
        assert!(profiles.get("reviewer").unwrap().resumable());
    }

    /// The activity the built-in `profile`'s rules give `screen` (rows of text)
    /// shown in a 24×80 terminal.
    fn activity_on(profile: &str, screen: &str) -> Option<crate::agent::activity::Activity> {
        let profiles = Profiles::builtin();
        let rules = &profiles.get(profile).unwrap().screen_rules;
        let bytes = screen.trim_end_matches('\n').replace('\n', "\r\n");
        let rows = crate::agent::screen::render(bytes.as_bytes(), 24, 80);
        crate::agent::activity::evaluate(rules, &rows).map(|found| found.activity)
    }

    #[test]
    fn aider_screens_tell_its_activity() {
        use crate::agent::activity::Activity;
        // Screens of aider 0.86.2 in a Corral PTY of 24×80 (see the fixtures'
        // README): blank rows below the prompt, old token counts above it.
        for (text, want) in [
            (
                include_str!("../../../tests/fixtures/aider/screen-idle.txt"),
                Activity::Idle,
            ),
            (
                include_str!("../../../tests/fixtures/aider/screen-waiting.txt"),
                Activity::Working,
            ),
            (
                include_str!("../../../tests/fixtures/aider/screen-confirm.txt"),
                Activity::WaitingForInput,
            ),
        ] {
            assert_eq!(activity_on("aider", text), Some(want), "{text}");
        }
        // Once answered, a question is no longer waiting.
        let answered = "Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: y\n";
        assert_eq!(activity_on("aider", answered), None);
    }

    #[test]
    fn codex_screens_tell_its_activity() {
        use crate::agent::activity::Activity;
        // Screens of Codex CLI 0.171.0 in a Corral PTY of 24×80 (see the
        // fixtures' README).
        for (text, want) in [
            (
                include_str!("../../../tests/fixtures/codex/screen-trust.txt"),
                Activity::WaitingForInput,
            ),
            (
                include_str!("../../../tests/fixtures/codex/screen-working.txt"),
                Activity::Working,
            ),
            (
                include_str!("../../../tests/fixtures/codex/screen-idle.txt"),
                Activity::Idle,
            ),
        ] {
            assert_eq!(activity_on("codex", text), Some(want), "{text}");
        }
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        for (text, want) in [
            ("[profiles.x]\nargs = []\n", "`command` is required"),
            (
                "[profiles.x]\ncommand = \"a\"\nresume_args = [\"--resume\"]\n",
                "{session_id}",
            ),
            (
                "[profiles.x]\ncommand = \"a\"\nargs = [\"{nope}\"]\n",
                "unknown placeholder",
            ),
            ("[profiles.x]\ncommand = \"a\"\nbogus = 1\n", "bogus"),
            (
                "[profiles.x]\ncommand = \"a\"\n[[profiles.x.screen_rules]]\nname = \"r\"\nactivity = \"IDLE\"\nregion = \"screen\"\npattern = \"(\"\npriority = 1\n",
                "pattern",
            ),
            (
                "[profiles.x]\ncommand = \"a\"\n[profiles.x.transcript]\nformat = \"codex-jsonl\"\ndir = \"{cwd}\"\nfile = \"history.md\"\n",
                "containing {session_id}",
            ),
            (
                "[profiles.x]\ncommand = \"a\"\n[profiles.x.transcript]\nformat = \"aider-markdown\"\ndir = \"{cwd}\"\nfile = \"{session_id}.md\"\n",
                "without {session_id}",
            ),
        ] {
            let err = Profiles::from_sources(Some(text)).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn slugs_follow_claude_code() {
        assert_eq!(cwd_slug("/srv/my_app.v2"), "-srv-my-app-v2");
        assert_eq!(cwd_slug("/tmp/.tmpAbC/work"), "-tmp--tmpAbC-work");
        assert_eq!(cwd_slug(&"/a".repeat(150)).len(), 200);
        let profiles = Profiles::builtin();
        let dir = profiles
            .get("claude")
            .unwrap()
            .transcript_dir(&vars())
            .unwrap();
        assert_eq!(
            dir,
            PathBuf::from("/home/me/.claude/projects/-srv-my-app-v2")
        );
    }

    #[test]
    fn transcript_dirs_follow_the_agents_config_variables() {
        let profiles = Profiles::builtin();
        let env = [
            (
                "CLAUDE_CONFIG_DIR".to_owned(),
                "/srv/claude-work".to_owned(),
            ),
            ("CODEX_HOME".to_owned(), "/srv/codex".to_owned()),
        ];
        let with_env = Vars {
            env: &env,
            ..vars()
        };
        let dir = |name: &str, vars: &Vars<'_>| profiles.get(name).unwrap().transcript_dir(vars);
        assert_eq!(
            dir("claude", &with_env),
            Some(PathBuf::from("/srv/claude-work/projects/-srv-my-app-v2"))
        );
        assert_eq!(
            dir("codex", &with_env),
            Some(PathBuf::from("/srv/codex/sessions"))
        );
        assert_eq!(
            dir("codex", &vars()),
            Some(PathBuf::from("/home/me/.codex/sessions"))
        );
        // Set but empty counts as not set (as the agents treat it).
        let empty = [("CLAUDE_CONFIG_DIR".to_owned(), String::new())];
        assert_eq!(
            dir(
                "claude",
                &Vars {
                    env: &empty,
                    ..vars()
                }
            ),
            Some(PathBuf::from("/home/me/.claude/projects/-srv-my-app-v2"))
        );
    }

    #[test]
    fn expansion_is_one_pass() {
        let env = [("X".to_owned(), "{home}".to_owned())];
        let vars = Vars {
            session_id: "{cwd}",
            env: &env,
            ..vars()
        };
        assert_eq!(
            expand(
                "{home}/{env:X}/{session_id}/{env:UNSET}/{cwd_slug}/{other}/{",
                &vars
            ),
            "/home/me/{home}/{cwd}//-srv-my-app-v2/{other}/{"
        );
    }

    #[test]
    fn transcript_dir_lists_are_checked() {
        let profile = |dir: &str| {
            format!(
                "[profiles.x]\ncommand = \"a\"\n[profiles.x.transcript]\nformat = \"claude-jsonl\"\nfile = \"{{session_id}}.jsonl\"\ndir = {dir}\n"
            )
        };
        for (dir, want) in [
            ("[]", "empty list"),
            ("[\"{env:X}/a\"]", "last of transcript.dir"),
            ("[\"{env:1X}/a\", \"/b\"]", "unknown placeholder"),
        ] {
            let err = Profiles::from_sources(Some(&profile(dir))).unwrap_err();
            assert!(err.contains(want), "{dir}: {err}");
        }
        let ok =
            Profiles::from_sources(Some(&profile("[\"{env:X_DIR}/a\", \"{home}/b\"]"))).unwrap();
        let env = [("X_DIR".to_owned(), "/x".to_owned())];
        let x = ok.get("x").unwrap();
        assert_eq!(
            x.transcript_dir(&Vars {
                env: &env,
                ..vars()
            }),
            Some(PathBuf::from("/x/a"))
        );
        assert_eq!(x.transcript_dir(&vars()), Some(PathBuf::from("/home/me/b")));
    }
}
