//! A form-urlencoded body extractor whose rejections use the Nature error
//! shape, plus typed accessors whose errors name the offending field.
//!
//! Nature clients send every POST body as `application/x-www-form-urlencoded`
//! and often omit fields they do not change, so fields are read one by one
//! rather than through one rigid struct.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use crate::error::ApiError;

pub use crate::error::BODY_LIMIT;
/// Longest value accepted for ordinary fields (names, ids, settings), in
/// characters — the unit the OpenAPI documents' `maxLength` counts.
const MAX_FIELD: usize = 1024;
/// Fields that carry IR messages, which are legitimately long.
const LONG_FIELDS: &[&str] = &["message", "Message"];

/// The fields of a form-urlencoded body, in order; a repeated key keeps its last value.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let body = Bytes::from_request(req, state).await?;
        if body.is_empty() {
            return Ok(Self::default());
        }
        match content_type.as_deref() {
            None | Some("application/x-www-form-urlencoded") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "the body must be application/x-www-form-urlencoded, not {other}"
                )))
            }
        }
        let fields = crate::text::decode_form(&body, "field")?;
        if let Some((k, _)) = fields
            .iter()
            .find(|(k, v)| v.chars().count() > MAX_FIELD && !LONG_FIELDS.contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "{k} is longer than {MAX_FIELD} characters"
            )));
        }
        Ok(Self { fields })
    }
}

impl Form {
    /// Builds a form from pairs (tests and internal callers).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A 400 naming the first field not in `known`. Kumo's own `/v1` forms
    /// are strict (a misspelt field is an error, not a silent default); the
    /// Nature-compatible `/1` ones ignore what they do not read, as clients
    /// written for the original cloud expect.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self
            .fields
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "{k:?} is not a field of this request (expected {})",
                known.join(", ")
            ))),
        }
    }

    /// The value of `name`, or a 400 naming it.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    }

    /// A required, non-blank value.
    pub fn required_nonempty(&self, name: &str) -> Result<&str, ApiError> {
        let v = self.required(name)?;
        if v.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{name} must not be empty")));
        }
        Ok(v)
    }

    /// The fields of a rename-style update (`label` — `nickname` or `name` —
    /// and `image`): each optional, the label non-blank if given, at least one
    /// of the two present.
    pub fn label_and_image(&self, label: &str) -> Result<(Option<&str>, Option<&str>), ApiError> {
        let name = self.get(label);
        if name.is_some_and(|n| n.trim().is_empty()) {
            return Err(ApiError::bad_request(format!("{label} must not be empty")));
        }
        let image = self.get("image");
        if name.is_none() && image.is_none() {
            return Err(ApiError::bad_request(format!(
                "{label} or image is required"
            )));
        }
        Ok((name, image))
    }

    /// A required finite number.
    pub fn required_number(&self, name: &str) -> Result<f64, ApiError> {
        let raw = self.required(name)?;
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a number, not {raw:?}")))
    }

    /// Every `prefix.<id>=<value>` field as `(id, value)` (Nature's `extra.$id`).
    pub fn prefixed(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.fields
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .map(|id| (id, v.as_str()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strict_form_names_the_first_field_it_does_not_know() {
        let form = Form::from_pairs(&[("url", "https://a.example"), ("evnets", "x")]);
        assert!(form.only(&["url", "events"]).is_err());
        let form = Form::from_pairs(&[("url", "https://a.example")]);
        assert!(form.only(&["url", "events"]).is_ok());
        assert!(Form::default().only(&[]).is_ok());
    }
}
