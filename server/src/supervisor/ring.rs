//! The scrollback ring: the newest output of a worker, bounded in bytes and
//! addressed by absolute byte offsets.
//!
//! Output arrives as [`Bytes`] chunks and is kept as those chunks (small ones are
//! merged so a flood of 1-byte echoes does not cost an allocation per byte kept).
//! Readers never hold a lock while sending: they ask for the bytes after their own
//! cursor and get a zero-copy slice of a chunk, or a copy assembled from several
//! chunks when a range spans them. A reader whose cursor fell out of the ring is
//! told what it missed ([`Read::Skipped`]) and continues from the oldest byte kept;
//! the writer is never slowed by readers.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Chunks shorter than this are merged into the previous chunk when both are small,
/// so that the per-chunk overhead stays a small fraction of the bytes kept.
const MERGE_BELOW: usize = 4096;

/// What a reader gets for its cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Bytes starting at `offset` (the cursor).
    Data { offset: u64, data: Bytes },
    /// The bytes `[from, to)` are gone; continue at `to`.
    Skipped { from: u64, to: u64 },
    /// Nothing after the cursor yet.
    Empty,
}

/// A bounded byte ring addressed by absolute offsets.
#[derive(Debug)]
pub struct Scrollback {
    /// `(absolute offset of the chunk's first byte, bytes)`, contiguous, oldest first.
    chunks: VecDeque<(u64, Bytes)>,
    /// Absolute offset of the oldest byte kept.
    start: u64,
    /// Absolute offset one past the newest byte.
    end: u64,
    /// Most bytes kept.
    capacity: usize,
}

impl Scrollback {
    /// An empty ring keeping at most `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> Self {
        Scrollback::starting_at(capacity, 0)
    }

    /// An empty ring whose next byte has absolute offset `offset` (used when history
    /// restored from storage continues at a known offset).
    pub fn starting_at(capacity: usize, offset: u64) -> Self {
        Scrollback {
            chunks: VecDeque::new(),
            start: offset,
            end: offset,
            capacity: capacity.max(1),
        }
    }

    /// Absolute offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Absolute offset one past the newest byte (the total output so far).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The most bytes kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity. Returns the new end.
    pub fn push(&mut self, data: Bytes) -> u64 {
        if data.is_empty() {
            return self.end;
        }
        let offset = self.end;
        self.end += data.len() as u64;
        match self.chunks.back_mut() {
            Some((_, last)) if last.len() < MERGE_BELOW && data.len() < MERGE_BELOW => {
                let mut merged = BytesMut::with_capacity(last.len() + data.len());
                merged.extend_from_slice(last);
                merged.extend_from_slice(&data);
                *last = merged.freeze();
            }
            _ => self.chunks.push_back((offset, data)),
        }
        self.evict();
        self.end
    }

    fn evict(&mut self) {
        while self.len() > self.capacity {
            let excess = (self.len() - self.capacity) as u64;
            let Some((offset, chunk)) = self.chunks.front_mut() else {
                break;
            };
            if (chunk.len() as u64) <= excess {
                self.start = *offset + chunk.len() as u64;
                self.chunks.pop_front();
            } else {
                // Keep the tail of the oldest chunk (a zero-copy slice).
                let cut = excess as usize;
                *chunk = chunk.slice(cut..);
                *offset += excess;
                self.start = *offset;
            }
        }
    }

    /// The bytes at `cursor`, at most `max` of them (`max` ≥ 1).
    pub fn read(&self, cursor: u64, max: usize) -> Read {
        if cursor < self.start {
            return Read::Skipped {
                from: cursor,
                to: self.start,
            };
        }
        if cursor >= self.end {
            return Read::Empty;
        }
        let max = max.max(1);
        // The chunk holding `cursor`: the last one starting at or before it.
        let index = self
            .chunks
            .partition_point(|(offset, _)| *offset <= cursor)
            .saturating_sub(1);
        let (offset, chunk) = &self.chunks[index];
        let within = (cursor - offset) as usize;
        let available = chunk.len() - within;
        if available >= max || index + 1 == self.chunks.len() {
            let take = available.min(max);
            return Read::Data {
                offset: cursor,
                data: chunk.slice(within..within + take),
            };
        }
        // The range spans chunks: assemble one buffer of up to `max` bytes.
        let want = max.min((self.end - cursor) as usize);
        let mut out = BytesMut::with_capacity(want);
        out.extend_from_slice(&chunk[within..]);
        for (_, next) in self.chunks.iter().skip(index + 1) {
            let room = want - out.len();
            if room == 0 {
                break;
            }
            out.extend_from_slice(&next[..next.len().min(room)]);
        }
        Read::Data {
            offset: cursor,
            data: out.freeze(),
        }
    }

    /// Every byte kept, oldest first, with the offset of the first (for persistence).
    pub fn snapshot(&self) -> (u64, Vec<Bytes>) {
        (
            self.start,
            self.chunks.iter().map(|(_, c)| c.clone()).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(ring: &Scrollback, mut cursor: u64, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match ring.read(cursor, max) {
                Read::Data { offset, data } => {
                    assert_eq!(offset, cursor);
                    assert!(data.len() <= max);
                    cursor += data.len() as u64;
                    out.extend_from_slice(&data);
                }
                Read::Skipped { to, .. } => cursor = to,
                Read::Empty => return out,
            }
        }
    }

    #[test]
    fn keeps_the_newest_bytes_within_capacity() {
        let mut ring = Scrollback::new(10);
        ring.push(Bytes::from_static(b"hello "));
        ring.push(Bytes::from_static(b"world, again"));
        assert_eq!(ring.end(), 18);
        assert_eq!(ring.start(), 8);
        assert_eq!(ring.len(), 10);
        assert_eq!(collect(&ring, ring.start(), 4), b"rld, again");
    }

    #[test]
    fn a_reader_behind_the_ring_is_told_what_it_skipped() {
        let mut ring = Scrollback::new(8);
        ring.push(Bytes::from(vec![b'a'; 5000]));
        ring.push(Bytes::from(vec![b'b'; 5000]));
        assert_eq!(ring.read(0, 100), Read::Skipped { from: 0, to: 9992 });
        assert_eq!(collect(&ring, 9992, 3), b"bbbbbbbb");
    }

    #[test]
    fn reads_across_chunks_are_assembled_up_to_max() {
        let mut ring = Scrollback::new(1 << 20);
        let a = vec![b'a'; 5000];
        let b = vec![b'b'; 5000];
        ring.push(Bytes::from(a.clone()));
        ring.push(Bytes::from(b.clone()));
        match ring.read(4000, 3000) {
            Read::Data { offset, data } => {
                assert_eq!(offset, 4000);
                assert_eq!(data.len(), 3000);
                assert_eq!(&data[..1000], &a[..1000]);
                assert_eq!(&data[1000..], &b[..2000]);
            }
            other => panic!("{other:?}"),
        }
        let mut all = a;
        all.extend_from_slice(&b);
        assert_eq!(collect(&ring, 0, 32 * 1024), all);
    }

    #[test]
    fn small_chunks_are_merged() {
        let mut ring = Scrollback::new(1 << 20);
        for _ in 0..1000 {
            ring.push(Bytes::from_static(b"x"));
        }
        assert_eq!(ring.chunks.len(), 1);
        assert_eq!(ring.len(), 1000);
        assert_eq!(collect(&ring, 0, 7).len(), 1000);
    }

    #[test]
    fn empty_pushes_and_cursors_at_the_end() {
        let mut ring = Scrollback::starting_at(16, 100);
        assert_eq!(ring.push(Bytes::new()), 100);
        assert_eq!(ring.read(100, 10), Read::Empty);
        ring.push(Bytes::from_static(b"abc"));
        assert_eq!(ring.read(103, 10), Read::Empty);
        assert_eq!(ring.read(99, 10), Read::Skipped { from: 99, to: 100 });
    }

    #[test]
    fn every_byte_is_read_exactly_once_under_random_pushes() {
        // A deterministic pseudo-random sequence of chunk sizes.
        let mut state = 0x2545_f491_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut ring = Scrollback::new(50_000);
        let mut written = Vec::new();
        let mut cursor = 0u64;
        let mut read = Vec::new();
        for round in 0..2000u32 {
            let len = (next() % 9000) as usize;
            let chunk: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            written.extend_from_slice(&chunk);
            ring.push(Bytes::from(chunk));
            if next() % 3 == 0 {
                loop {
                    match ring.read(cursor, 1 + (next() % 40_000) as usize) {
                        Read::Data { data, .. } => {
                            read.extend_from_slice(&data);
                            cursor += data.len() as u64;
                        }
                        Read::Skipped { from, to } => {
                            read.extend_from_slice(&written[from as usize..to as usize]);
                            cursor = to;
                        }
                        Read::Empty => break,
                    }
                }
            }
            assert!(ring.len() <= 50_000);
        }
        assert_eq!(&read[..], &written[..read.len()]);
    }
}
