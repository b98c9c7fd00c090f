//! Everything the CLI prints: tables and lines on stdout, JSON on stdout, notices
//! and errors on stderr.
//!
//! * [`Output`] carries the chosen format (`-o table|json`) and whether to colour,
//!   and writes to stdout, returning write errors (a closed pipe ends the program
//!   quietly instead of panicking as `println!` would).
//! * [`json`] turns response messages into proto3 JSON.
//! * [`display`] has the short human forms of values used by tables.
//! * Tables are borderless, left-aligned columns under upper-case headers, never
//!   wrapped, so they stay stable for `grep`/`awk`. States are coloured only when
//!   stdout is a terminal and `NO_COLOR` is unset.

pub mod display;
pub mod json;

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};

use comfy_table::presets::NOTHING;
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use owo_colors::OwoColorize;

use crate::cli::OutputFormat;
use crate::error::CliError;
use json::ProtoMessage;

/// Whether to colour a stream: it is a terminal and `NO_COLOR` is unset or empty.
fn colour_allowed(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The colour family of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Running: green.
    Good,
    /// Suspended or waiting: yellow.
    Warn,
    /// Failed: red.
    Bad,
    /// Ended or gone: dim.
    Muted,
    /// Kept for the record: blue.
    Archive,
    /// On its way: cyan.
    Pending,
    /// No colour.
    Plain,
}

/// The tone of a session or worker state name.
pub fn state_tone(state: &str) -> Tone {
    match state {
        "ACTIVE" | "RUNNING" => Tone::Good,
        "PAUSED" => Tone::Warn,
        "ERROR" | "FAILED" => Tone::Bad,
        "STOPPED" | "DELETED" | "EXITED" => Tone::Muted,
        "ARCHIVED" => Tone::Archive,
        "CREATED" | "STARTING" | "PENDING" => Tone::Pending,
        _ => Tone::Plain,
    }
}

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    format: OutputFormat,
    color: bool,
}

impl Output {
    /// Output in `format`, coloured when stdout is a terminal and `NO_COLOR` unset.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            color: colour_allowed(io::stdout().is_terminal()),
        }
    }

    /// Output in `format` that never colours (for tests).
    #[cfg(test)]
    pub fn uncoloured(format: OutputFormat) -> Self {
        Self {
            format,
            color: false,
        }
    }

    /// True with `-o json`.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints `message` as pretty proto3 JSON.
    pub fn json<M: ProtoMessage>(&self, message: &M) -> Result<(), CliError> {
        print_json(message)
    }

    /// Prints `message` as proto3 JSON on one line (for streams of messages).
    pub fn json_line<M: ProtoMessage>(&self, message: &M) -> Result<(), CliError> {
        self.line(json::to_json(message, false)?)
    }

    /// Prints one line of text.
    pub fn line(&self, text: impl Display) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()?;
        Ok(())
    }

    /// Prints a table, without trailing spaces.
    pub fn table(&self, table: &Table) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        for line in table.lines() {
            writeln!(stdout, "{}", line.trim_end())?;
        }
        stdout.flush()?;
        Ok(())
    }

    /// A new list table with these column headers.
    pub fn list_table(&self, headers: &[&str]) -> Table {
        let mut table = self.bare_table();
        table.set_header(headers.iter().map(Cell::new).collect::<Vec<_>>());
        tighten(&mut table);
        table
    }

    /// A new two-column `key  value` table, without header.
    pub fn key_value_table(&self) -> Table {
        self.bare_table()
    }

    fn bare_table(&self) -> Table {
        let mut table = Table::new();
        table
            .load_preset(NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .force_no_tty();
        if self.color {
            table.enforce_styling();
        }
        table
    }

    /// Prints `key  value` rows as a two-column table.
    pub fn key_values(&self, rows: KeyValues) -> Result<(), CliError> {
        let mut table = self.key_value_table();
        for (key, value) in rows.rows {
            table.add_row(vec![Cell::new(key), value]);
        }
        tighten(&mut table);
        self.table(&table)
    }

    /// A table cell for a state name, coloured by its tone.
    pub fn state_cell(&self, state: &str) -> Cell {
        self.toned_cell(state, state_tone(state))
    }

    /// A table cell coloured with `tone` (when colouring).
    pub fn toned_cell(&self, text: &str, tone: Tone) -> Cell {
        let cell = Cell::new(text).set_alignment(CellAlignment::Left);
        if !self.color {
            return cell;
        }
        match tone {
            Tone::Good => cell.fg(Color::Green),
            Tone::Warn => cell.fg(Color::Yellow),
            Tone::Bad => cell.fg(Color::Red),
            Tone::Muted => cell.add_attribute(Attribute::Dim),
            Tone::Archive => cell.fg(Color::Blue),
            Tone::Pending => cell.fg(Color::Cyan),
            Tone::Plain => cell,
        }
    }

    /// `text` coloured as the state it names (when colouring), for plain lines.
    pub fn paint_state(&self, text: &str) -> String {
        paint(text, state_tone(text), self.color)
    }
}

/// The rows of a key/value view, skipping empty values.
#[derive(Default)]
pub struct KeyValues {
    rows: Vec<(&'static str, Cell)>,
}

impl KeyValues {
    /// Adds `key  value` unless `value` is empty.
    pub fn text(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.rows.push((key, Cell::new(value)));
        }
    }

    /// Adds `key  <cell>` (e.g. a coloured state).
    pub fn cell(&mut self, key: &'static str, value: Cell) {
        self.rows.push((key, value));
    }
}

/// Columns flush left, two spaces apart (call once the columns exist).
fn tighten(table: &mut Table) {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
}

/// `text` with the ANSI colour of `tone` when `color` is true.
fn paint(text: &str, tone: Tone, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    match tone {
        Tone::Good => text.green().to_string(),
        Tone::Warn => text.yellow().to_string(),
        Tone::Bad => text.red().to_string(),
        Tone::Muted => text.dimmed().to_string(),
        Tone::Archive => text.blue().to_string(),
        Tone::Pending => text.cyan().to_string(),
        Tone::Plain => text.to_owned(),
    }
}

/// Prints any API message as pretty proto3 JSON on stdout (see [`json`]).
pub fn print_json<M: ProtoMessage>(message: &M) -> Result<(), CliError> {
    let text = json::to_json(message, true)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}

/// Writes one line to stderr. Failures are ignored: there is nowhere left to
/// report them.
pub fn notice(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Writes one line to stderr dimmed (when stderr is a terminal and colour allowed).
pub fn dim_notice(text: &str) {
    notice(paint(
        text,
        Tone::Muted,
        colour_allowed(io::stderr().is_terminal()),
    ));
}

/// Reports a failed command on stderr as `error: <message>`.
pub fn print_error(error: &CliError) {
    let color = colour_allowed(io::stderr().is_terminal());
    notice(format!("{}: {error}", paint("error", Tone::Bad, color)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_tones() {
        assert_eq!(state_tone("ACTIVE"), Tone::Good);
        assert_eq!(state_tone("PAUSED"), Tone::Warn);
        assert_eq!(state_tone("ERROR"), Tone::Bad);
        assert_eq!(state_tone("STOPPED"), Tone::Muted);
        assert_eq!(state_tone("ARCHIVED"), Tone::Archive);
        assert_eq!(state_tone("STARTING"), Tone::Pending);
        assert_eq!(state_tone("whatever"), Tone::Plain);
    }

    #[test]
    fn list_tables_are_plain_columns() {
        let out = Output::uncoloured(OutputFormat::Table);
        let mut table = out.list_table(&["NAME", "STATE"]);
        table.add_row(vec![Cell::new("demo"), out.state_cell("ACTIVE")]);
        table.add_row(vec![
            Cell::new("a-much-longer-name"),
            out.state_cell("PAUSED"),
        ]);
        let lines: Vec<String> = table.lines().map(|l| l.trim_end().to_owned()).collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].trim_start().starts_with("NAME"), "{lines:#?}");
        let column = lines[0].find("STATE").unwrap();
        assert_eq!(lines[1].find("ACTIVE"), Some(column), "{lines:#?}");
        assert_eq!(lines[2].find("PAUSED"), Some(column), "{lines:#?}");
        assert!(!lines.concat().contains('\x1b'));
    }
}
