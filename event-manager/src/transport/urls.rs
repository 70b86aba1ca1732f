//! Broker URLs: one `amqp://` or `amqps://` URL, or a comma-separated list of the nodes of a
//! cluster, and how they are shown without their passwords.
//!
//! A list is split only where a comma is followed by `amqp://` or `amqps://`, so that a
//! password containing a comma stays whole:
//!
//! ```
//! use event_manager::transport::urls;
//!
//! let list = "amqp://app:s3cr,et@rabbit-1:5672/%2f, amqp://app:s3cr,et@rabbit-2:5672/%2f";
//! assert_eq!(urls::split(list), ["amqp://app:s3cr,et@rabbit-1:5672/%2f", "amqp://app:s3cr,et@rabbit-2:5672/%2f"]);
//! assert_eq!(
//!     urls::redact(list),
//!     "amqp://app:***@rabbit-1:5672/%2f,amqp://app:***@rabbit-2:5672/%2f"
//! );
//! let error = format!("cannot reach {list}: bad password s3cr,et");
//! assert!(!urls::scrub(&error, list).contains("s3cr"));
//! ```

/// The URLs of `list`, trimmed: split at each comma followed (after blanks) by `amqp://` or
/// `amqps://`, or by nothing but blanks. Empty entries are left out.
pub fn split(list: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut start = 0;
    for (comma, _) in list.match_indices(',') {
        let next = list[comma + 1..].trim_start();
        if next.is_empty() || starts_with_scheme(next) {
            urls.push(list[start..comma].trim());
            start = comma + 1;
        }
    }
    urls.push(list[start..].trim());
    urls.retain(|url| !url.is_empty());
    urls
}

fn starts_with_scheme(text: &str) -> bool {
    ["amqp://", "amqps://"].iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
    })
}

/// The password of `url`, if it has one.
fn password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `list` (one URL or several, comma-separated) with every password replaced by `***`, safe
/// for logs and errors. The URLs of a list are joined by `,` without blanks.
pub fn redact(list: &str) -> String {
    split(list)
        .into_iter()
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable broker URL>".to_owned();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match (password(url), authority.rfind('@')) {
        (Some(_), Some(at)) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `text` without the passwords of the URLs in `list`: each URL and `user:password@`
/// redacted, and each password itself (as written in the URL or percent-decoded) wherever it
/// appears, unless it is so short (under 4 characters) that it would mangle ordinary words.
pub fn scrub(text: &str, list: &str) -> String {
    let mut text = text.replace(list, &redact(list));
    for url in split(list) {
        text = text.replace(url, &redact_one(url));
        if let Some(password) = password(url) {
            for secret in [password.to_owned(), percent_decode(password)] {
                text = text.replace(&format!(":{secret}@"), ":***@");
                if secret.chars().count() >= 4 {
                    text = text.replace(&secret, "***");
                }
            }
        }
    }
    text
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_splits_only_before_a_scheme() {
        assert_eq!(split("amqp://h1/"), ["amqp://h1/"]);
        assert_eq!(
            split(" amqp://u:a,b@h1/ ,AMQPS://u:a,b@h2/,amqp://h3/, "),
            ["amqp://u:a,b@h1/", "AMQPS://u:a,b@h2/", "amqp://h3/"]
        );
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("memory://"), ["memory://"]);
    }

    #[test]
    fn every_password_of_a_list_is_redacted() {
        let list = "amqp://guest:secret@127.0.0.1:5672/%2f,amqp://guest:s,cr@et@127.0.0.1:5692/,amqp://127.0.0.1:5693";
        assert_eq!(
            redact(list),
            "amqp://guest:***@127.0.0.1:5672/%2f,amqp://guest:***@127.0.0.1:5692/,amqp://127.0.0.1:5693"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(redact("guest:secret@host"), "<unparsable broker URL>");
        assert_eq!(redact("amqp://user@host/"), "amqp://user@host/");
    }

    #[test]
    fn passwords_are_scrubbed_from_any_text() {
        let url = "amqp://guest:p%40ss-w0rd@host:5672/%2f";
        assert_eq!(redact(url), "amqp://guest:***@host:5672/%2f");
        let text = format!("failed: {url}; as decoded p@ss-w0rd; guest:p%40ss-w0rd@host");
        let scrubbed = scrub(&text, url);
        assert!(!scrubbed.contains("w0rd"), "{scrubbed}");
        assert!(
            scrubbed.contains("amqp://guest:***@host:5672/%2f"),
            "{scrubbed}"
        );
        // A short password is removed from the URL without mangling words.
        let short = "amqp://u:p@host/";
        assert_eq!(
            scrub("amqp feature; amqp://u:p@host/; u:p@host", short),
            "amqp feature; amqp://u:***@host/; u:***@host"
        );
        let list = "amqp://a:first-secret@h1/,amqp://b:second-secret@h2/";
        let scrubbed = scrub(&format!("{list} / second-secret"), list);
        assert!(!scrubbed.contains("secret"), "{scrubbed}");
    }
}
