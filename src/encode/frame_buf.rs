//! The buffer frames are appended to. It is reused from frame to frame, and the bytes
//! past its end stay initialized, so a frame is written into its tail without
//! zero-filling it first, which safe code could not avoid in a vector's spare capacity
//! (docs/PERFORMANCE.md has what zero-filling cost).

use std::fmt;

#[derive(Default)]
pub(crate) struct FrameBuf {
    /// Initialized bytes: the buffer's `len`, then whatever longer contents left behind.
    pub(super) bytes: Vec<u8>,
    pub(super) len: usize,
}

impl FrameBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        FrameBuf {
            bytes: Vec::with_capacity(capacity),
            len: 0,
        }
    }

    /// The buffer's contents.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    pub(crate) fn extend_from_slice(&mut self, tail: &[u8]) {
        self.bytes.truncate(self.len);
        self.bytes.extend_from_slice(tail);
        self.len = self.bytes.len();
    }

    /// How many bytes fit after the end without growing.
    pub(super) fn spare(&self) -> usize {
        self.bytes.capacity() - self.len
    }

    /// The `n` bytes after the end, initialized (zeros where never written before).
    pub(super) fn tail(&mut self, n: usize) -> &mut [u8] {
        let end = self.len.saturating_add(n);
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes.get_mut(self.len..end).unwrap_or_default()
    }
}

impl fmt::Debug for FrameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBuf")
            .field("len", &self.len)
            .field("capacity", &self.bytes.capacity())
            .finish()
    }
}
