//! Builds the AIP-160 filter string of `ListSessions` from `session list` options.
//!
//! Several `--state` values are OR'ed inside parentheses; everything else (kind,
//! each label, the free `--filter` expression in parentheses) is AND'ed:
//!
//! ```text
//! (state = ACTIVE OR state = PAUSED) AND kind = WORKTREE AND labels.task = "JIRA-12" AND (<expr>)
//! ```
//!
//! String values are double-quoted with `"` and `\` escaped by a backslash. Label
//! keys are written unquoted, so they are checked against the key syntax
//! (`[A-Za-z0-9_.-]`) to keep a key from smuggling operators into the expression.

use corral::pb;

/// The parts of a session filter.
#[derive(Debug, Default, Clone)]
pub struct SessionFilter {
    /// Any of these states.
    pub states: Vec<pb::session::State>,
    /// This kind.
    pub kind: Option<pb::session::Kind>,
    /// Every one of these `labels.<key> = "<value>"`.
    pub labels: Vec<(String, String)>,
    /// A raw expression AND'ed with the rest.
    pub expression: Option<String>,
}

impl SessionFilter {
    /// The filter string (empty when nothing restricts the list).
    ///
    /// Fails when a label key contains characters a filter key cannot hold.
    pub fn build(&self) -> Result<String, String> {
        let mut terms = Vec::new();
        match self.states.as_slice() {
            [] => {}
            [state] => terms.push(format!("state = {}", state.as_str_name())),
            states => terms.push(format!(
                "({})",
                states
                    .iter()
                    .map(|s| format!("state = {}", s.as_str_name()))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            )),
        }
        if let Some(kind) = self.kind {
            terms.push(format!("kind = {}", kind.as_str_name()));
        }
        for (key, value) in &self.labels {
            if !is_valid_label_key(key) {
                return Err(format!(
                    "invalid label key {key:?}: use letters, digits, '_', '.' and '-'"
                ));
            }
            terms.push(format!("labels.{key} = {}", quote(value)));
        }
        if let Some(expression) = self.expression.as_deref().map(str::trim)
            && !expression.is_empty()
        {
            terms.push(format!("({expression})"));
        }
        Ok(terms.join(" AND "))
    }
}

/// Whether `key` can be written unquoted after `labels.` in a filter.
fn is_valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A filter string literal: `value` in double quotes, with `\` and `"` escaped.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::session::{Kind, State};

    #[test]
    fn empty_filter() {
        assert_eq!(SessionFilter::default().build().unwrap(), "");
    }

    #[test]
    fn one_state_needs_no_parentheses() {
        let filter = SessionFilter {
            states: vec![State::Active],
            ..Default::default()
        };
        assert_eq!(filter.build().unwrap(), "state = ACTIVE");
    }

    #[test]
    fn the_full_example() {
        let filter = SessionFilter {
            states: vec![State::Active, State::Paused],
            kind: Some(Kind::Worktree),
            labels: vec![("task".into(), "JIRA-12".into())],
            expression: Some("display_name = \"demo\" OR NOT kind = QUICK".into()),
        };
        assert_eq!(
            filter.build().unwrap(),
            "(state = ACTIVE OR state = PAUSED) AND kind = WORKTREE AND \
             labels.task = \"JIRA-12\" AND (display_name = \"demo\" OR NOT kind = QUICK)"
        );
    }

    #[test]
    fn only_an_expression() {
        let filter = SessionFilter {
            expression: Some("  state = ERROR ".into()),
            ..Default::default()
        };
        assert_eq!(filter.build().unwrap(), "(state = ERROR)");
        let blank = SessionFilter {
            expression: Some("   ".into()),
            ..Default::default()
        };
        assert_eq!(blank.build().unwrap(), "");
    }

    #[test]
    fn labels_are_anded_and_quoted() {
        let filter = SessionFilter {
            labels: vec![
                ("repository".into(), "acme/web".into()),
                ("note".into(), r#"say "hi" \o/"#.into()),
                ("empty".into(), String::new()),
            ],
            ..Default::default()
        };
        assert_eq!(
            filter.build().unwrap(),
            r#"labels.repository = "acme/web" AND labels.note = "say \"hi\" \\o/" AND labels.empty = """#
        );
    }

    #[test]
    fn bad_label_keys_are_refused() {
        for key in ["", "a b", "x=1 OR state", "k\"", "é"] {
            let filter = SessionFilter {
                labels: vec![(key.into(), "v".into())],
                ..Default::default()
            };
            assert!(filter.build().is_err(), "{key:?} must be refused");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(quote(r"a\b"), r#""a\\b""#);
        assert_eq!(quote(r#"\""#), r#""\\\"""#);
        assert_eq!(quote(""), r#""""#);
    }
}
