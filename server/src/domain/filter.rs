//! A parser for the `filter` of ListSessions / SearchMessages, after AIP-160.
//!
//! Supported: comparisons `field op value` with `=`, `!=`, `<`, `<=`, `>`, `>=`,
//! the has-operator `labels.key:*` (the label is present), `AND`, `OR`, `NOT`/`-`,
//! implicit AND between juxtaposed terms, and parentheses. As in AIP-160, `OR`
//! binds tighter than `AND`: `a AND b OR c` is `a AND (b OR c)`.
//!
//! Fields: `state` (a Session.State name), `kind` (`QUICK`/`WORKTREE`),
//! `display_name`, `labels.<key>`, and `create_time` / `update_time` (RFC 3339).
//! Values are bare words or double-quoted strings with `\"` and `\\` escapes.
//!
//! The result is an [`Expr`] tree that the store turns into SQL with bound
//! parameters, so nothing of the filter text ever reaches SQL as text.

use chrono::{DateTime, Utc};

use super::names::validate_label_key;
use super::state::State;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of parentheses and NOTs accepted.
pub const MAX_DEPTH: usize = 32;

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `state op NAME`
    State(Op, State),
    /// `kind op QUICK|WORKTREE`
    Kind(Op, SourceKind),
    /// `display_name op "text"`
    DisplayName(Op, String),
    /// `labels.key op "value"`
    Label(String, Op, String),
    /// `labels.key:*`
    HasLabel(String),
    /// `create_time op "rfc3339"`
    CreateTime(Op, DateTime<Utc>),
    /// `update_time op "rfc3339"`
    UpdateTime(Op, DateTime<Utc>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Where a session's directory comes from (`Session.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Quick,
    Worktree,
}

impl SourceKind {
    /// The stored name (`QUICK`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Quick => "QUICK",
            SourceKind::Worktree => "WORKTREE",
        }
    }

    /// Parses a stored name (case-insensitive).
    pub fn parse(name: &str) -> Option<SourceKind> {
        [SourceKind::Quick, SourceKind::Worktree]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// A filter that does not parse: the byte offset and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("filter: {message} (at byte {offset})")]
pub struct FilterError {
    pub offset: usize,
    pub message: String,
}

/// Parses `filter`; `Ok(None)` for an empty (or blank) filter.
///
/// Errors: [`FilterError`] for a syntax error, an unknown field, an operator the
/// field does not support, a bad value (unknown state, bad timestamp), or a filter
/// longer than [`MAX_FILTER_BYTES`] or nested deeper than [`MAX_DEPTH`].
pub fn parse(filter: &str) -> Result<Option<Expr>, FilterError> {
    if filter.len() > MAX_FILTER_BYTES {
        return Err(FilterError {
            offset: MAX_FILTER_BYTES,
            message: format!(
                "is {} bytes long; the limit is {MAX_FILTER_BYTES}",
                filter.len()
            ),
        });
    }
    let tokens = lex(filter)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        end: filter.len(),
    };
    let expr = parser.expression()?;
    if let Some(token) = parser.peek() {
        return Err(FilterError {
            offset: token.offset,
            message: format!("unexpected {}", token.kind.describe()),
        });
    }
    Ok(Some(expr))
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    Word(String),
    Quoted(String),
    Op(Op),
    Has,
    LParen,
    RParen,
    Minus,
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            TokenKind::Word(w) => format!("{w:?}"),
            TokenKind::Quoted(q) => format!("string {q:?}"),
            TokenKind::Op(op) => format!("operator {}", op_text(*op)),
            TokenKind::Has => "':'".into(),
            TokenKind::LParen => "'('".into(),
            TokenKind::RParen => "')'".into(),
            TokenKind::Minus => "'-'".into(),
        }
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    offset: usize,
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(offset, c)) = chars.peek() {
        let kind = match c {
            c if c.is_whitespace() => {
                chars.next();
                continue;
            }
            '(' => {
                chars.next();
                TokenKind::LParen
            }
            ')' => {
                chars.next();
                TokenKind::RParen
            }
            ':' => {
                chars.next();
                TokenKind::Has
            }
            '=' => {
                chars.next();
                TokenKind::Op(Op::Eq)
            }
            '!' => {
                chars.next();
                match chars.next() {
                    Some((_, '=')) => TokenKind::Op(Op::Ne),
                    _ => {
                        return Err(FilterError {
                            offset,
                            message: "'!' must be followed by '='".into(),
                        });
                    }
                }
            }
            '<' | '>' => {
                chars.next();
                let eq = matches!(chars.peek(), Some((_, '=')));
                if eq {
                    chars.next();
                }
                TokenKind::Op(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '-' => {
                chars.next();
                TokenKind::Minus
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(FilterError {
                                offset,
                                message: "unterminated string".into(),
                            });
                        }
                        Some((_, '"')) => break,
                        Some((escape_at, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\'))) => text.push(c),
                            _ => {
                                return Err(FilterError {
                                    offset: escape_at,
                                    message: "only \\\" and \\\\ escapes are allowed".into(),
                                });
                            }
                        },
                        Some((at, c)) if c.is_control() => {
                            return Err(FilterError {
                                offset: at,
                                message: "control character in string".into(),
                            });
                        }
                        Some((_, c)) => text.push(c),
                    }
                }
                TokenKind::Quoted(text)
            }
            c if is_word_char(c) => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if !(is_word_char(c) || c == '-' && !word.is_empty()) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                TokenKind::Word(word)
            }
            other => {
                return Err(FilterError {
                    offset,
                    message: format!("unexpected character {other:?}"),
                });
            }
        };
        tokens.push(Token { kind, offset });
    }
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*')
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn error_here(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            offset: self.peek().map_or(self.end, |t| t.offset),
            message: message.into(),
        }
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: TokenKind::Word(w), .. }) if w == keyword)
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// expression := sequence { AND sequence }
    fn expression(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.sequence()?];
        while self.peek_keyword("AND") {
            self.next();
            terms.push(self.sequence()?);
        }
        Ok(flatten(terms, Expr::And))
    }

    /// sequence := factor { factor }   (juxtaposition is AND)
    fn sequence(&mut self) -> Result<Expr, FilterError> {
        let mut factors = vec![self.factor()?];
        while let Some(token) = self.peek() {
            match &token.kind {
                TokenKind::RParen => break,
                TokenKind::Word(w) if w == "AND" => break,
                _ => factors.push(self.factor()?),
            }
        }
        Ok(flatten(factors, Expr::And))
    }

    /// factor := term { OR term }
    fn factor(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.term()?];
        while self.peek_keyword("OR") {
            self.next();
            terms.push(self.term()?);
        }
        Ok(flatten(terms, Expr::Or))
    }

    /// term := [NOT | '-'] simple
    fn term(&mut self) -> Result<Expr, FilterError> {
        let negated = match self.peek().map(|t| &t.kind) {
            Some(TokenKind::Minus) => true,
            Some(TokenKind::Word(w)) if w == "NOT" => true,
            _ => false,
        };
        if negated {
            self.next();
            self.enter()?;
            let inner = self.simple()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.simple()
    }

    /// simple := '(' expression ')' | restriction
    fn simple(&mut self) -> Result<Expr, FilterError> {
        match self.peek().map(|t| t.kind.clone()) {
            Some(TokenKind::LParen) => {
                self.next();
                self.enter()?;
                let inner = self.expression()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token {
                        kind: TokenKind::RParen,
                        ..
                    }) => Ok(inner),
                    _ => Err(self.error_here("missing ')'")),
                }
            }
            Some(TokenKind::Word(field)) if !matches!(field.as_str(), "AND" | "OR" | "NOT") => {
                let offset = self.peek().map_or(self.end, |t| t.offset);
                self.next();
                self.restriction(&field, offset)
            }
            Some(other) => Err(self.error_here(format!(
                "expected a comparison such as state = ACTIVE, found {}",
                other.describe()
            ))),
            None => Err(self.error_here("unexpected end of filter")),
        }
    }

    fn value(&mut self) -> Result<String, FilterError> {
        match self.next() {
            Some(Token {
                kind: TokenKind::Word(w) | TokenKind::Quoted(w),
                ..
            }) => Ok(w),
            Some(Token { kind, offset }) => Err(FilterError {
                offset,
                message: format!("expected a value, found {}", kind.describe()),
            }),
            None => Err(self.error_here("expected a value, found the end of the filter")),
        }
    }

    fn restriction(&mut self, field: &str, offset: usize) -> Result<Expr, FilterError> {
        let error = |message: String| FilterError { offset, message };
        let op = match self.next() {
            Some(Token {
                kind: TokenKind::Op(op),
                ..
            }) => op,
            Some(Token {
                kind: TokenKind::Has,
                ..
            }) => {
                let key = field.strip_prefix("labels.").ok_or_else(|| {
                    error(format!(
                        "':' is only supported as labels.<key>:*, not on {field:?}"
                    ))
                })?;
                validate_label_key(key).map_err(|e| error(e.reason))?;
                let value = self.value()?;
                if value != "*" {
                    return Err(error(format!(
                        "labels.{key}:{value} is not supported; use labels.{key}:* to test presence or labels.{key} = \"{value}\""
                    )));
                }
                return Ok(Expr::HasLabel(key.to_owned()));
            }
            _ => {
                return Err(error(format!(
                    "expected an operator (=, !=, <, <=, >, >=, :) after {field:?}"
                )));
            }
        };
        let value = self.value()?;
        let equality_only = |name: &str| -> Result<(), FilterError> {
            if matches!(op, Op::Eq | Op::Ne) {
                Ok(())
            } else {
                Err(error(format!(
                    "{name} supports only = and !=, not {}",
                    op_text(op)
                )))
            }
        };
        match field {
            "state" => {
                equality_only("state")?;
                let state = State::parse(&value).ok_or_else(|| {
                    error(format!(
                        "unknown state {value:?}; expected one of CREATED, STARTING, ACTIVE, PAUSED, STOPPED, ARCHIVED, ERROR, DELETED"
                    ))
                })?;
                Ok(Expr::State(op, state))
            }
            "kind" => {
                equality_only("kind")?;
                let kind = SourceKind::parse(&value).ok_or_else(|| {
                    error(format!(
                        "unknown kind {value:?}; expected QUICK or WORKTREE"
                    ))
                })?;
                Ok(Expr::Kind(op, kind))
            }
            "display_name" => {
                equality_only("display_name")?;
                Ok(Expr::DisplayName(op, value))
            }
            "create_time" | "update_time" => {
                let time = DateTime::parse_from_rfc3339(&value)
                    .map_err(|e| {
                        error(format!(
                            "{field} needs an RFC 3339 time such as \"2026-01-12T10:00:00Z\": {e}"
                        ))
                    })?
                    .with_timezone(&Utc);
                Ok(if field == "create_time" {
                    Expr::CreateTime(op, time)
                } else {
                    Expr::UpdateTime(op, time)
                })
            }
            _ => {
                if let Some(key) = field.strip_prefix("labels.") {
                    validate_label_key(key).map_err(|e| error(e.reason))?;
                    equality_only("labels")?;
                    return Ok(Expr::Label(key.to_owned(), op, value));
                }
                Err(error(format!(
                    "unknown field {field:?}; filterable fields are state, kind, display_name, labels.<key>, create_time, update_time"
                )))
            }
        }
    }
}

fn flatten(mut items: Vec<Expr>, join: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        items.remove(0)
    } else {
        join(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(filter: &str) -> Expr {
        parse(filter).unwrap().unwrap()
    }

    #[test]
    fn empty_filter_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn state_and_label() {
        assert_eq!(
            ok("state = ACTIVE AND labels.task = \"JIRA-12\""),
            Expr::And(vec![
                Expr::State(Op::Eq, State::Active),
                Expr::Label("task".into(), Op::Eq, "JIRA-12".into()),
            ])
        );
    }

    #[test]
    fn or_binds_tighter_than_and() {
        assert_eq!(
            ok("kind = QUICK AND state = active OR state = paused"),
            Expr::And(vec![
                Expr::Kind(Op::Eq, SourceKind::Quick),
                Expr::Or(vec![
                    Expr::State(Op::Eq, State::Active),
                    Expr::State(Op::Eq, State::Paused),
                ]),
            ])
        );
    }

    #[test]
    fn juxtaposition_negation_and_parentheses() {
        assert_eq!(
            ok("-state = STOPPED NOT (labels.workflow:* OR display_name != x)"),
            Expr::And(vec![
                Expr::Not(Box::new(Expr::State(Op::Eq, State::Stopped))),
                Expr::Not(Box::new(Expr::Or(vec![
                    Expr::HasLabel("workflow".into()),
                    Expr::DisplayName(Op::Ne, "x".into()),
                ]))),
            ])
        );
    }

    #[test]
    fn quoted_values_with_escapes_and_times() {
        assert_eq!(
            ok(r#"labels.note = "say \"hi\" \\ o'k""#),
            Expr::Label("note".into(), Op::Eq, "say \"hi\" \\ o'k".into())
        );
        assert!(matches!(
            ok("create_time >= \"2026-01-12T10:00:00Z\""),
            Expr::CreateTime(Op::Ge, _)
        ));
    }

    #[test]
    fn errors_say_what_and_where() {
        for (filter, needle) in [
            ("state = RUNNING", "unknown state"),
            ("color = red", "unknown field"),
            ("state > ACTIVE", "only = and !="),
            ("state =", "expected a value"),
            ("(state = ACTIVE", "missing ')'"),
            ("state = ACTIVE)", "unexpected ')'"),
            ("labels.task = \"open", "unterminated string"),
            ("labels.Bad = x", "lower-case"),
            ("labels.task:x", "labels.task:*"),
            ("create_time > yesterday", "RFC 3339"),
            (
                "state = ACTIVE; DROP TABLE sessions",
                "unexpected character ';'",
            ),
            ("AND", "expected a comparison"),
            ("state ! ACTIVE", "'!' must be followed"),
        ] {
            let err = parse(filter).unwrap_err();
            assert!(
                err.message.contains(needle),
                "{filter:?}: {err} does not contain {needle:?}"
            );
        }
    }

    #[test]
    fn depth_and_length_are_bounded() {
        let deep = format!("{}state = ACTIVE{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
        let nots = format!("{}state = ACTIVE{}", "NOT (".repeat(40), ")".repeat(40));
        assert!(parse(&nots).unwrap_err().message.contains("nested deeper"));
        // AIP-160 allows one NOT per term.
        assert!(parse("NOT NOT state = ACTIVE").is_err());
        let long = "state = ACTIVE OR ".repeat(300);
        assert!(parse(&long).unwrap_err().message.contains("limit"));
    }
}
