//! Keeping secrets out of output. Everything printed to the user — errors, plans, echoed
//! commands — can go through [`redact`], which masks the values of the secret environment
//! variables (and their encodings), values the templating took from blocks and environment
//! variables ([`remember`]) and credentials embedded in URLs. A plan masks a whole changed field
//! whose value is or holds such a value ([`Secrets::mask_change`]): `<secret changed>`.

use std::fmt;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::Value;

/// Environment variables whose values are secret. Names are printed, values never.
pub(crate) const SECRET_ENV_VARS: &[&str] = &[
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "FLY_API_TOKEN",
    "FLY_ACCESS_TOKEN",
];

const MASK: &str = "***";

/// What a plan shows for the old and the new value of a field that holds a secret.
pub(crate) const SECRET_OLD: &str = "<secret>";
pub(crate) const SECRET_NEW: &str = "<secret changed>";

/// Templated values shorter than this are masked in plans but not in free text: the shortest
/// ones (`/app`, `1`, `prod`) would mask ordinary words and paths; real secrets are longer.
const MIN_REMEMBERED_LEN: usize = 8;

/// Values the templating took from blocks and environment variables, for [`redact`].
static REMEMBERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Masks secret values from the process environment, values [`remember`]ed and URL
/// credentials in `text`.
pub fn redact(text: &str) -> String {
    let mut secrets: Vec<String> = SECRET_ENV_VARS
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    if let Ok(remembered) = REMEMBERED.lock() {
        secrets.extend(remembered.iter().cloned());
    }
    redact_with(text, &secrets)
}

/// From now on, [`redact`] masks `secrets` too (those of at least [`MIN_REMEMBERED_LEN`]
/// characters) wherever they appear, e.g. echoed in a validation problem.
pub(crate) fn remember(secrets: &Secrets) {
    if let Ok(mut remembered) = REMEMBERED.lock() {
        for value in &secrets.0 {
            if value.chars().count() >= MIN_REMEMBERED_LEN && !remembered.contains(value) {
                remembered.push(value.clone());
            }
        }
    }
}

/// Values that must not be shown: what a deployment's templates took from blocks and
/// environment variables, and the credentials the process holds. Debug shows the count only.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(Vec<String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

impl Secrets {
    pub(crate) fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut out: Vec<String> = Vec::new();
        for value in values {
            if !value.is_empty() && !out.contains(&value) {
                out.push(value);
            }
        }
        Secrets(out)
    }

    pub(crate) fn extend(&mut self, other: &Secrets) {
        for value in &other.0 {
            if !self.0.contains(value) {
                self.0.push(value.clone());
            }
        }
    }

    /// Whether a string (or number) anywhere in `value` is one of the secrets, or contains one
    /// of at least 4 characters (a secret pasted into a longer string).
    pub(crate) fn touch(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.touch_text(s),
            Value::Number(n) => self.0.contains(&n.to_string()),
            Value::Array(items) => items.iter().any(|v| self.touch(v)),
            Value::Object(map) => map.iter().any(|(k, v)| self.touch_text(k) || self.touch(v)),
            Value::Bool(_) | Value::Null => false,
        }
    }

    fn touch_text(&self, text: &str) -> bool {
        self.0
            .iter()
            .any(|secret| text == secret || (secret.len() >= 4 && text.contains(secret.as_str())))
    }

    /// A field change as a plan may show it: unchanged when neither side touches a secret,
    /// else `<secret>` → `<secret changed>` (an absent side stays absent). The change itself
    /// is still detected: only what is shown is masked.
    pub(crate) fn mask_change(
        &self,
        old: Option<Value>,
        new: Option<Value>,
    ) -> (Option<Value>, Option<Value>) {
        let touched = old.as_ref().is_some_and(|v| self.touch(v))
            || new.as_ref().is_some_and(|v| self.touch(v));
        if !touched {
            return (old, new);
        }
        (
            old.map(|_| Value::String(SECRET_OLD.into())),
            new.map(|_| Value::String(SECRET_NEW.into())),
        )
    }

    /// `text` with every secret of at least 4 characters masked (for messages about one
    /// deployment, which may echo its values).
    pub(crate) fn mask_text(&self, text: &str) -> String {
        redact_with(text, &self.0)
    }
}

/// Masks each of `secrets` (and its base64 form, as sent in `Authorization: Basic`) and
/// URL credentials (`scheme://user:password@host` → `scheme://***@host`).
pub(crate) fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out = mask_url_credentials(text);
    let mut needles: Vec<String> = Vec::new();
    for secret in secrets {
        // Very short values would mask ordinary words; real keys are long.
        if secret.len() < 4 {
            continue;
        }
        needles.push(secret.clone());
        needles.push(base64::engine::general_purpose::STANDARD.encode(secret));
        // FlyV1 tokens are often quoted without their prefix.
        if let Some(rest) = secret.strip_prefix("FlyV1 ") {
            if rest.len() >= 4 {
                needles.push(rest.to_string());
            }
        }
    }
    // Longest first, so a secret containing another is masked whole.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for needle in needles {
        if out.contains(&needle) {
            out = out.replace(&needle, MASK);
        }
    }
    out
}

/// `https://user:pw@host/x` → `https://***@host/x`, for every URL in the text.
pub fn mask_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace/quote.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_credentials() {
        assert_eq!(
            mask_url_credentials("GET https://admin:s3cret@gw.example/prefect/api/x failed"),
            "GET https://***@gw.example/prefect/api/x failed"
        );
        assert_eq!(
            mask_url_credentials("http://tok@h:1/a http://h/b"),
            "http://***@h:1/a http://h/b"
        );
        assert_eq!(mask_url_credentials("no urls here"), "no urls here");
        assert_eq!(mask_url_credentials("x://"), "x://");
        // A password containing '@' is masked up to the last '@' of the authority.
        assert_eq!(
            mask_url_credentials("https://u:p@ss@host/"),
            "https://***@host/"
        );
    }

    #[test]
    fn masks_secret_values_and_base64() {
        let secrets = vec!["admin:pa55word".to_string(), "FlyV1 fm2_abcdef".to_string()];
        let b64 = base64::engine::general_purpose::STANDARD.encode("admin:pa55word");
        let text = format!("auth admin:pa55word basic {b64} fly FlyV1 fm2_abcdef and fm2_abcdef");
        let out = redact_with(&text, &secrets);
        assert!(!out.contains("pa55word"), "{out}");
        assert!(!out.contains(&b64), "{out}");
        assert!(!out.contains("fm2_abcdef"), "{out}");
        assert_eq!(out, "auth *** basic *** fly *** and ***");
    }

    #[test]
    fn secrets_mask_whole_changes_and_keep_others() {
        let secrets = Secrets::new(["s3cret-token".to_string(), "42".to_string()]);
        let json = |v: &str| Some(Value::String(v.into()));
        assert_eq!(
            secrets.mask_change(json("old-s3cret-token"), json("new")),
            (json(SECRET_OLD), json(SECRET_NEW))
        );
        assert_eq!(
            secrets.mask_change(
                None,
                Some(serde_json::json!({"env": {"T": "s3cret-token"}}))
            ),
            (None, json(SECRET_NEW))
        );
        // Short secrets match whole values only; numbers by their text.
        assert_eq!(
            secrets.mask_change(Some(serde_json::json!(42)), json("x")),
            (json(SECRET_OLD), json(SECRET_NEW))
        );
        assert_eq!(
            secrets.mask_change(json("1420"), json("plain")),
            (json("1420"), json("plain"))
        );
        assert_eq!(secrets.mask_text("got s3cret-token"), "got ***");
        assert_eq!(format!("{secrets:?}"), "Secrets(2 values)");
    }

    #[test]
    fn remembered_values_are_redacted_when_long_enough() {
        remember(&Secrets::new([
            "remembered-sentinel-0001".to_string(),
            "/app".to_string(),
        ]));
        assert_eq!(
            redact("x remembered-sentinel-0001 in /app/flows"),
            "x *** in /app/flows"
        );
    }

    #[test]
    fn ignores_tiny_values() {
        assert_eq!(redact_with("a b c", &["a".into()]), "a b c");
    }
}
