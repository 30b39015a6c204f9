//! One caller identity of a record.

use std::borrow::Cow;

use super::Text;
use crate::kinds::CallerIdentityType;

/// One caller identity: how it is expressed, the identity itself and a description.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerIdentity {
    /// The identity's type; identities are grouped by it on the wire.
    pub kind: CallerIdentityType,
    /// The identity, e.g. a UPN or an object id. Must not be empty.
    pub identity: Text,
    /// What the identity is. Must not be empty.
    pub description: Text,
}

impl CallerIdentity {
    /// An identity from static text, usable in a `static` template.
    pub const fn from_static(
        kind: CallerIdentityType,
        identity: &'static str,
        description: &'static str,
    ) -> Self {
        CallerIdentity {
            kind,
            identity: Cow::Borrowed(identity),
            description: Cow::Borrowed(description),
        }
    }
}

impl CallerIdentity {
    /// How the identity is expressed.
    pub fn get_kind(&self) -> CallerIdentityType {
        self.kind
    }

    /// The identity itself.
    pub fn get_identity(&self) -> &str {
        &self.identity
    }

    /// What the identity is.
    pub fn get_description(&self) -> &str {
        &self.description
    }
}
