//! Input checks shared by functions; each returns the field errors it found.

use portico_core::FieldError;

/// A required single-line text field: trimmed, 1..=max characters, no control characters.
pub(crate) fn text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if trimmed.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    } else if trimmed.chars().any(char::is_control) {
        errors.push(FieldError::new(field, "must not contain control characters"));
    }
}

/// A plausible e-mail address: one `@`, something on both sides, a dot in the domain, and nothing
/// that could end or extend an address in a mail header (spaces, control characters, `<>,;"`).
pub(crate) fn is_email(value: &str) -> bool {
    value.len() <= 254
        && !value.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

/// A field that must be an e-mail address (see `is_email`).
pub(crate) fn email(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if !is_email(value.trim()) {
        errors.push(FieldError::new(field, "must be an e-mail address"));
    }
}

/// An identifier-like field: 1..=max characters, no whitespace or control characters.
pub(crate) fn token_like(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push(FieldError::new(field, "must not contain whitespace"));
    }
}

/// An identifier that becomes part of a storage key or topic (see `is_key_safe_id`).
pub(crate) fn key_safe_id(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if !portico_core::domain::is_key_safe_id(value) {
        errors.push(FieldError::new(field, portico_core::domain::KEY_SAFE_ID_RULE));
    }
}
