//! A value on a cache line of its own, so that writes to its neighbours never make a
//! reader of it fetch the line again from another core.

/// `T` alone on its cache line (two lines on x86-64, whose prefetcher fetches lines in
/// pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct OwnLine<T>(pub(crate) T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
