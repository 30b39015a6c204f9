//! The service tree id: a UUID, in its canonical form.

use super::ValidationError;

/// Checks a service tree id and returns its canonical form, the one the client sends:
/// it must be a UUID other than the nil one, in any of the usual textual forms
/// (hyphenated, simple, braced or `urn:uuid:`, in any case); the result is lowercase
/// and hyphenated.
///
/// ```
/// use geneva_audit::{ValidationError, validate_service_tree_id};
///
/// let canonical = validate_service_tree_id("{E6C9FCB1-7F08-4C1D-9E7A-123456789ABC}");
/// assert_eq!(canonical.as_deref(), Ok("e6c9fcb1-7f08-4c1d-9e7a-123456789abc"));
/// assert_eq!(validate_service_tree_id(" "), Err(ValidationError::MissingServiceTreeId));
/// assert!(matches!(
///     validate_service_tree_id("my-service"),
///     Err(ValidationError::ServiceTreeIdNotUuid { .. })
/// ));
/// ```
pub fn validate_service_tree_id(id: &str) -> Result<String, ValidationError> {
    if id.trim().is_empty() {
        return Err(ValidationError::MissingServiceTreeId);
    }
    let uuid = uuid::Uuid::try_parse(id).map_err(|e| ValidationError::ServiceTreeIdNotUuid {
        value: id.to_owned(),
        reason: e.to_string(),
    })?;
    if uuid.is_nil() {
        return Err(ValidationError::NilServiceTreeId);
    }
    Ok(uuid.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use crate::validate::ValidationError;

    #[test]
    fn service_tree_ids_are_uuids_in_any_textual_form() {
        use super::validate_service_tree_id as check;
        const CANONICAL: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
        for form in [
            CANONICAL,
            "E6C9FCB1-7F08-4C1D-9E7A-123456789ABC",
            "e6c9fcb17f084c1d9e7a123456789abc",
            "E6C9FCB17F084C1D9E7A123456789abc",
            "{e6c9fcb1-7f08-4c1d-9e7a-123456789abc}",
            "{E6C9FCB1-7F08-4C1D-9E7A-123456789ABC}",
            "urn:uuid:e6c9fcb1-7f08-4c1d-9e7a-123456789abc",
            "urn:uuid:E6C9FCB1-7F08-4C1D-9E7A-123456789ABC",
        ] {
            assert_eq!(check(form).as_deref(), Ok(CANONICAL), "{form}");
        }
        assert_eq!(
            check("ffffffff-ffff-ffff-ffff-ffffffffffff").as_deref(),
            Ok("ffffffff-ffff-ffff-ffff-ffffffffffff")
        );
        for blank in ["", " ", "\t\n"] {
            assert_eq!(check(blank), Err(ValidationError::MissingServiceTreeId));
        }
        for nil in [
            "00000000-0000-0000-0000-000000000000",
            "00000000000000000000000000000000",
            "{00000000-0000-0000-0000-000000000000}",
        ] {
            assert_eq!(check(nil), Err(ValidationError::NilServiceTreeId), "{nil}");
        }
        for bad in [
            "svc",
            " e6c9fcb1-7f08-4c1d-9e7a-123456789abc",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789abc ",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789abg",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789ab",
            "e6c9fcb1-7f08-4c1d-9e7a-123456789abcd",
            "e6c9fcb1-7f084c1d-9e7a-123456789abc",
            "{e6c9fcb1-7f08-4c1d-9e7a-123456789abc",
        ] {
            match check(bad) {
                Err(ValidationError::ServiceTreeIdNotUuid { value, reason }) => {
                    assert_eq!(value, bad);
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let e = check("svc").unwrap_err().to_string();
        assert!(
            e.starts_with(r#"service tree ID "svc" is not a UUID: "#),
            "{e}"
        );
    }
}
