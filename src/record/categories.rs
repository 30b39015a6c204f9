//! The operation categories of a record, as a bitset.

use crate::kinds::OperationCategory;

/// A set of [`OperationCategory`] values, stored as a bitset: no heap, always sorted by
/// numeric value and free of duplicates, as the wire wants it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OperationCategories(u32);

impl OperationCategories {
    /// The empty set.
    pub const fn new() -> Self {
        OperationCategories(0)
    }

    /// Adds a category (adding it twice is harmless).
    pub fn insert(&mut self, category: OperationCategory) {
        self.0 |= 1 << category as u32;
    }

    /// Whether the set holds `category`.
    pub fn contains(self, category: OperationCategory) -> bool {
        self.0 & (1 << category as u32) != 0
    }

    /// How many categories the set holds.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The categories in numeric order.
    pub fn iter(self) -> impl Iterator<Item = OperationCategory> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            while bits != 0 {
                let n = bits.trailing_zeros();
                bits &= bits - 1;
                if let Some(c) = OperationCategory::from_repr(n as u8) {
                    return Some(c);
                }
            }
            None
        })
    }
}

impl FromIterator<OperationCategory> for OperationCategories {
    fn from_iter<I: IntoIterator<Item = OperationCategory>>(iter: I) -> Self {
        let mut set = OperationCategories::new();
        for c in iter {
            set.insert(c);
        }
        set
    }
}
