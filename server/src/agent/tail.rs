//! Following a transcript file as the agent appends to it (polling with
//! `tokio::fs`, so the runtime never blocks on file I/O).
//!
//! Each poll reads what was appended since the last one (at most
//! [`MAX_READ_BYTES`]), hands complete lines to the [`TranscriptParser`] and keeps an
//! incomplete last line for the next poll. A file that got shorter was replaced:
//! reading starts again from its beginning (the message keys make that harmless).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::profile::TranscriptFormat;
use super::transcript::{ParsedLine, TranscriptParser};

/// Most bytes read per poll.
pub const MAX_READ_BYTES: usize = 4 << 20;
/// Longest line kept waiting for its end; a longer one is skipped.
const MAX_LINE_BYTES: usize = 32 << 20;

/// A transcript being followed.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    format: TranscriptFormat,
    /// aider: the chat read from (see [`TranscriptParser::from_chat`]).
    chat: String,
    parser: TranscriptParser,
    /// Bytes of the file consumed as complete lines.
    offset: u64,
    /// The start of an incomplete last line.
    partial: Vec<u8>,
    /// Skipping the rest of an over-long line.
    skipping: bool,
}

impl Tail {
    /// Follows `path` from its beginning; for an aider history, only from the
    /// chat that started at `chat` (empty: all of it).
    pub fn new(path: PathBuf, format: TranscriptFormat, chat: &str) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Tail {
            parser: TranscriptParser::new(format, &name).from_chat(chat),
            path,
            format,
            chat: chat.to_owned(),
            offset: 0,
            partial: Vec::new(),
            skipping: false,
        }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes consumed as complete lines.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads what was appended; returns the complete new lines, parsed, with the
    /// offset each starts at. A missing file yields nothing (it may not exist yet).
    pub async fn poll(&mut self) -> std::io::Result<Vec<(u64, ParsedLine)>> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let len = file.metadata().await?.len();
        let read_from = self.offset + self.partial.len() as u64;
        if len < read_from {
            // Replaced or truncated: start over.
            *self = Tail::new(self.path.clone(), self.format, &self.chat);
            return Box::pin(self.poll()).await;
        }
        if len == read_from {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(read_from)).await?;
        let want = usize::try_from(len - read_from)
            .unwrap_or(MAX_READ_BYTES)
            .min(MAX_READ_BYTES);
        let mut buffer = Vec::with_capacity(want);
        (&mut file)
            .take(want as u64)
            .read_to_end(&mut buffer)
            .await?;
        let mut lines = self.feed(&buffer);
        // At the end of the file, between whole lines, what is open is complete:
        // aider appends each prompt, answer and note in one write.
        let at_end = read_from + buffer.len() as u64 == len && self.partial.is_empty();
        if at_end {
            let last = self.parser.finish();
            if !last.messages.is_empty() {
                lines.push((self.offset, last));
            }
        }
        Ok(lines)
    }

    /// Splits `bytes` (what followed the last read) into lines and parses the
    /// complete ones.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(u64, ParsedLine)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(newline);
            rest = &tail[1..];
            let start = self.offset;
            let skipped = std::mem::replace(&mut self.skipping, false);
            self.partial.extend_from_slice(head);
            let line = std::mem::take(&mut self.partial);
            self.offset += line.len() as u64 + 1;
            if skipped {
                tracing::warn!(path = %self.path.display(), start, "skipped a transcript line longer than {MAX_LINE_BYTES} bytes");
                continue;
            }
            // Markdown keeps its blank lines and indentation; JSON lines need
            // neither.
            if self.format == TranscriptFormat::AiderMarkdown {
                out.push((start, self.parser.parse_line(&line, start)));
            } else {
                let trimmed = line.trim_ascii();
                if !trimmed.is_empty() {
                    out.push((start, self.parser.parse_line(trimmed, start)));
                }
            }
        }
        if self.skipping {
            // Still inside an over-long line: count it, keep nothing.
            self.offset += rest.len() as u64;
        } else {
            self.partial.extend_from_slice(rest);
            if self.partial.len() > MAX_LINE_BYTES {
                self.offset += self.partial.len() as u64;
                self.partial.clear();
                self.skipping = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_appends_and_keeps_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let mut tail = Tail::new(path.clone(), TranscriptFormat::ClaudeJsonl, "");
        assert!(tail.poll().await.unwrap().is_empty(), "missing file");
        let first = r#"{"type":"user","uuid":"u1","message":{"content":"one"}}"#;
        let second = r#"{"type":"user","uuid":"u2","message":{"content":"two"}}"#;
        std::fs::write(&path, format!("{first}\n{}", &second[..10])).unwrap();
        let lines = tail.poll().await.unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].1.messages[0].text, "one");
        assert_eq!(tail.offset(), first.len() as u64 + 1);
        std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
        let lines = tail.poll().await.unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0, first.len() as u64 + 1);
        assert_eq!(lines[0].1.messages[0].text, "two");
        // Replaced by a shorter file: read from the start again.
        std::fs::write(&path, format!("{second}\n")).unwrap();
        let lines = tail.poll().await.unwrap();
        assert_eq!(lines[0].1.messages[0].text, "two");
        assert_eq!(lines[0].0, 0);
    }

    #[tokio::test]
    async fn aider_blocks_are_read_when_the_file_ends_with_them() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".aider.chat.history.md");
        let mut tail = Tail::new(path.clone(), TranscriptFormat::AiderMarkdown, "");
        let append = |text: &str| {
            let mut file = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            file.write_all(text.as_bytes()).unwrap();
        };
        let texts = |lines: Vec<(u64, ParsedLine)>| -> Vec<String> {
            lines
                .into_iter()
                .flat_map(|(_, l)| l.messages)
                .map(|m| m.text)
                .collect()
        };
        append("\n#### hi  \n\n    indented answer\n\nmore\n\n");
        assert_eq!(
            texts(tail.poll().await.unwrap()),
            vec!["hi", "    indented answer\n\nmore"]
        );
        // A line still being written is not the end of a block.
        append("> Tokens: 1 sent  \n> Appl");
        assert_eq!(texts(tail.poll().await.unwrap()), Vec::<String>::new());
        append("ied edit to a.py  \n");
        assert_eq!(
            texts(tail.poll().await.unwrap()),
            vec!["Tokens: 1 sent\nApplied edit to a.py"]
        );
        assert!(tail.poll().await.unwrap().is_empty(), "nothing new");
    }
}
