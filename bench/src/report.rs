//! The results: one table for people, one JSON file for programs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{Cell, ContentArrangement, Table, presets::ASCII_MARKDOWN};
use serde::Serialize;

/// One measured figure, with its baselines and target.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario, e.g. `throughput`.
    pub scenario: String,
    /// What is measured, e.g. `client read rate`.
    pub metric: String,
    /// The unit of `corral`, `raw` and `tmux`, e.g. `MiB/s`, `µs`, `%`.
    pub unit: String,
    /// Corral's figure (median of the repetitions).
    pub corral: Option<f64>,
    /// The raw-PTY baseline, where one applies.
    pub raw: Option<f64>,
    /// The tmux baseline, where one applies and tmux is installed.
    pub tmux: Option<f64>,
    /// Corral against the baselines or its own reference, e.g. `0.81× raw`.
    pub ratio: String,
    /// The target from issue 7, e.g. `≥ 0.7× raw`.
    pub target: String,
    /// Whether the target is met (`None`: no target or not measured).
    pub pass: Option<bool>,
    /// Anything a reader must know to read the figure.
    pub note: String,
    /// Each repetition's figure, in `unit`, in the order they ran, by series
    /// (`corral`, `raw`, `tmux`, or the reference the ratio is taken against,
    /// e.g. `single`). Empty for figures measured once. JSON only: it shows how
    /// far the repetitions spread on a shared machine.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<String, Vec<f64>>,
}

impl Row {
    /// A row of `scenario`/`metric` in `unit` with no figures yet.
    pub fn new(scenario: &str, metric: &str, unit: &str, target: &str) -> Row {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            corral: None,
            raw: None,
            tmux: None,
            ratio: String::new(),
            target: target.into(),
            pass: None,
            note: String::new(),
            samples: BTreeMap::new(),
        }
    }

    /// Records the repetitions of `series`, each divided by `scale` (e.g. bytes/s
    /// → MiB/s); nothing when there are none (no tmux).
    pub fn samples(&mut self, series: &str, values: &[f64], scale: f64) {
        if values.is_empty() {
            return;
        }
        self.samples
            .insert(series.into(), values.iter().map(|v| v / scale).collect());
    }

    /// Adds a note (separated by `; ` from earlier ones).
    pub fn note(&mut self, note: impl AsRef<str>) {
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(note.as_ref());
    }

    fn format(&self, value: Option<f64>) -> String {
        let Some(value) = value else {
            return "—".into();
        };
        let digits = match self.unit.as_str() {
            "µs" | "cycles/s" | "workers" => 0,
            "ms" | "s" | "%" => 2,
            _ => 1,
        };
        format!("{value:.digits$} {}", self.unit)
    }
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// A description of the machine: CPUs, kernel, load at the start.
    pub machine: String,
    /// True for `--smoke` (tiny sizes: figures are not comparable).
    pub smoke: bool,
    /// The server binary measured.
    pub corrald: String,
    /// tmux's version, or why there is no tmux baseline.
    pub tmux: String,
    /// The figures.
    pub rows: Vec<Row>,
    /// Scenarios that failed functionally (bytes lost, an RPC failed).
    pub errors: Vec<String>,
}

impl Report {
    /// The table, with the notes below it.
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table
            .load_preset(ASCII_MARKDOWN)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header([
                "scenario", "metric", "Corral", "raw PTY", "tmux", "ratio", "target", "result",
            ]);
        let mut notes = Vec::new();
        for row in &self.rows {
            let mut metric = row.metric.clone();
            if !row.note.is_empty() {
                notes.push(row.note.clone());
                metric.push_str(&format!(" [{}]", notes.len()));
            }
            table.add_row([
                Cell::new(&row.scenario),
                Cell::new(metric),
                Cell::new(row.format(row.corral)),
                Cell::new(row.format(row.raw)),
                Cell::new(row.format(row.tmux)),
                Cell::new(&row.ratio),
                Cell::new(&row.target),
                Cell::new(match row.pass {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "—",
                }),
            ]);
        }
        let mut out = table.to_string();
        out.push('\n');
        for (i, note) in notes.iter().enumerate() {
            out.push_str(&format!("[{}] {note}\n", i + 1));
        }
        for error in &self.errors {
            out.push_str(&format!("ERROR: {error}\n"));
        }
        out
    }

    /// Writes the report as JSON to `path` (creating its directory).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// `a / b` as `0.81×`, or `—` when either is missing or `b` is 0.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// A ratio for the table, e.g. `0.81× raw`.
pub fn show_ratio(value: Option<f64>, of: &str) -> Option<String> {
    value.map(|v| format!("{v:.2}× {of}"))
}

/// Joins the ratios that exist with `, `.
pub fn join(parts: impl IntoIterator<Item = Option<String>>) -> String {
    parts.into_iter().flatten().collect::<Vec<_>>().join(", ")
}
