//! Why a line could not be read, naming the field.

use std::fmt;

use crate::kinds::MessageKind;
use crate::validate::ValidationError;

/// Why a line could not be turned into a [`JsonMessage`](super::JsonMessage). Every variant about a field
/// names it as a path (`record.CustomData.map[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The line is not valid JSON.
    Syntax {
        /// The JSON parser's message, with line and column.
        message: String,
    },
    /// The line is JSON but not an object.
    NotAnObject {
        /// The JSON type it has instead.
        found: &'static str,
    },
    /// A required field is missing (only `type` is required).
    MissingField {
        /// The missing field.
        field: String,
    },
    /// A field this format does not know.
    UnknownField {
        /// The field.
        field: String,
    },
    /// A body that does not belong to the message's kind (a `heartbeat` on a record).
    UnexpectedField {
        /// The field.
        field: String,
        /// The message's kind.
        kind: MessageKind,
    },
    /// A field holds the wrong JSON type.
    WrongType {
        /// The field.
        field: String,
        /// What it should hold.
        expected: &'static str,
        /// The JSON type it holds.
        found: &'static str,
    },
    /// An enum field holds a name or number that is not one of its values.
    UnknownEnum {
        /// The field.
        field: String,
        /// The value, as JSON text (`"Frobnicate"`, `77`).
        value: String,
    },
    /// `CallerIpAddress` is not an IP address (with an optional non-empty `%zone`).
    InvalidIp {
        /// The field.
        field: String,
        /// The text that did not parse.
        value: String,
    },
    /// A number that is not in the range the field takes (`ts` must be an integer that
    /// fits in an `i64`).
    InvalidNumber {
        /// The field.
        field: String,
        /// The number, as JSON text.
        value: String,
        /// What the field takes.
        expected: &'static str,
    },
    /// A typed custom value's `$type` is not one this format knows.
    UnknownValueType {
        /// The field.
        field: String,
        /// The `$type`.
        type_name: String,
    },
    /// A typed custom value of a kind the record model cannot express (`float32`,
    /// `time`): there is no [`Value`](crate::Value) that the encoder would write the way the
    /// reference writes it.
    Inexpressible {
        /// The field.
        field: String,
        /// The `$type`.
        type_name: String,
    },
    /// `env_ikey` is not a service tree id the client would send.
    ServiceTreeId {
        /// The field.
        field: String,
        /// What is wrong with it.
        error: ValidationError,
    },
    /// A caller identity type holds no identities (`"PUID": []`), which the reference
    /// client refuses.
    NoIdentities {
        /// The field.
        field: String,
        /// The identity type's wire name.
        identity_type: &'static str,
    },
    /// A typed custom value whose `$value` does not fit its `$type`.
    InvalidTypedValue {
        /// The field.
        field: String,
        /// The `$type`.
        type_name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl JsonError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        use JsonError::*;
        match self {
            Syntax { .. } | NotAnObject { .. } => None,
            MissingField { field }
            | UnknownField { field }
            | UnexpectedField { field, .. }
            | WrongType { field, .. }
            | UnknownEnum { field, .. }
            | InvalidIp { field, .. }
            | InvalidNumber { field, .. }
            | UnknownValueType { field, .. }
            | Inexpressible { field, .. }
            | NoIdentities { field, .. }
            | ServiceTreeId { field, .. }
            | InvalidTypedValue { field, .. } => Some(field),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JsonError::*;
        match self {
            Syntax { message } => write!(f, "not valid JSON: {message}"),
            NotAnObject { found } => write!(f, "expected a JSON object, found {found}"),
            MissingField { field } => write!(f, "{field}: missing"),
            UnknownField { field } => write!(f, "{field}: unknown field"),
            UnexpectedField { field, kind } => write!(f, "{field}: not allowed for {kind}"),
            WrongType {
                field,
                expected,
                found,
            } => write!(f, "{field}: expected {expected}, found {found}"),
            UnknownEnum { field, value } => write!(f, "{field}: unknown value {value}"),
            InvalidIp { field, value } => write!(f, "{field}: {value:?} is not an IP address"),
            InvalidNumber {
                field,
                value,
                expected,
            } => write!(f, "{field}: {value} is not {expected}"),
            UnknownValueType { field, type_name } => {
                write!(f, "{field}: unknown $type {type_name:?}")
            }
            Inexpressible { field, type_name } => write!(
                f,
                "{field}: $type {type_name:?} cannot be expressed by the record model"
            ),
            ServiceTreeId { field, error } => write!(f, "{field}: {error}"),
            NoIdentities {
                field,
                identity_type,
            } => write!(
                f,
                "{field}: at least one identity is required for identity type {identity_type}"
            ),
            InvalidTypedValue {
                field,
                type_name,
                reason,
            } => write!(
                f,
                "{field}: invalid $value for $type {type_name:?}: {reason}"
            ),
        }
    }
}

impl std::error::Error for JsonError {}
