//! The frame encoder: `[tag, [[ts, body]], {"TimeFormat":"DateTime"}]`, written byte by
//! byte (the bytes `rmp`'s low-level writers produce, checked by the tests) into a buffer
//! that is reused from frame to frame.
//!
//! One walk over the record serves both encoding and measuring: it is generic over an
//! [`Out`](out::Out) that either writes bytes (a [`Cursor`](out::Cursor) over the bytes
//! reserved for the frame in a [`FrameBuf`]) or only counts them, so [`encoded_len`] can never disagree with
//! what is written.
//! Encoding first bounds the frame's size from its string lengths, takes that much of
//! the buffer's initialized spare bytes and writes into it with one bounds check per string
//! (key, header and text together); names of enum values, with their keys, are
//! pre-encoded in tables. The record is only read, and nothing is allocated once the
//! buffer has grown to the largest frame.

mod append;
mod encoder;
mod frame;
mod frame_buf;
mod heartbeat;
mod ip;
mod ipv4;
mod out;
mod size_bound;
#[cfg(test)]
mod tests;
mod value;
mod wire;

pub(crate) use append::{append_heartbeat, append_record, append_record_in};
pub use encoder::Encoder;
pub use frame::encoded_len;
pub(crate) use frame_buf::FrameBuf;
pub use heartbeat::Heartbeat;
pub use size_bound::encoded_len_bound;
