//! Keeping secrets out of output. Everything printed to the user — errors, plans, echoed
//! commands — can go through [`redact`], which masks the values of the secret environment
//! variables (and their encodings) and credentials embedded in URLs.

use base64::Engine as _;

/// Environment variables whose values are secret. Names are printed, values never.
pub(crate) const SECRET_ENV_VARS: &[&str] = &[
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "FLY_API_TOKEN",
    "FLY_ACCESS_TOKEN",
];

const MASK: &str = "***";

/// Masks secret values from the process environment and URL credentials in `text`.
pub fn redact(text: &str) -> String {
    let secrets: Vec<String> = SECRET_ENV_VARS
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    redact_with(text, &secrets)
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
    fn ignores_tiny_values() {
        assert_eq!(redact_with("a b c", &["a".into()]), "a b c");
    }
}
