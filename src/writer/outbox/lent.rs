//! The bytes of the frames the outbox holds for the spool: read into one reused buffer,
//! kept until their frames leave the outbox, without an allocation per frame.

use super::WRITE_BYTES;

#[derive(Default)]
pub(crate) struct Lent {
    /// `bytes[..dead]` belonged to frames that left; `bytes[taken..]` was read and not
    /// yet taken by a frame.
    bytes: Vec<u8>,
    dead: usize,
    taken: usize,
}

impl Lent {
    /// Where the next frames are read to, after the last; and by how much the live bytes
    /// moved down to make room (the frames' offsets must move with them), if they did.
    pub(crate) fn buffer(&mut self) -> (&mut Vec<u8>, usize) {
        let mut moved = 0;
        if self.dead == self.taken {
            // No frame holds bytes here (and every byte read was taken): start over.
            self.clear();
        } else if self.dead >= WRITE_BYTES && self.dead * 2 >= self.bytes.len() {
            // Most of it is dead: move the live bytes down, once per so many bytes.
            moved = self.dead;
            self.bytes.drain(..moved);
            self.taken -= moved;
            self.dead = 0;
        }
        (&mut self.bytes, moved)
    }

    /// The next `len` bytes read belong to a frame: returns where they start.
    pub(crate) fn take(&mut self, len: usize) -> usize {
        let at = self.taken;
        self.taken = at + len;
        at
    }

    /// The bytes of the frame at `at..at + len`.
    pub(crate) fn get(&self, at: usize, len: usize) -> &[u8] {
        self.bytes.get(at..at + len).unwrap_or_default()
    }

    /// The frame ending at `end` left the outbox, and every one before it.
    pub(crate) fn let_go_until(&mut self, end: usize) {
        self.dead = end;
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        (self.dead, self.taken) = (0, 0);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}
