//! `multipart/mixed` (RFC 2046, section 5.1) as the federation media endpoints use it
//! (spec: server-server-api.md, "Content Repository"): exactly two parts, JSON metadata
//! and then the media with its own `Content-Type` and `Content-Disposition`.
//!
//! Sans-I/O: building the envelope around bytes that are streamed, and splitting a body
//! that was read. Nothing here panics on what another server sent.

use rand::{Rng, distr::Alphanumeric};

/// One part: its headers (names lower-cased) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// `(name, value)`, names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The part's body.
    pub body: &'a [u8],
}

impl Part<'_> {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fresh boundary: 32 random letters and digits, which cannot occur by chance in the
/// media they surround.
pub fn new_boundary() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The bytes before and after a media item's bytes, for a response whose `Content-Type`
/// is `multipart/mixed; boundary={boundary}`: an empty JSON metadata part, then the
/// media part with `headers`.
pub fn envelope(boundary: &str, headers: &[(&str, &str)]) -> (Vec<u8>, Vec<u8>) {
    let mut head =
        format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    (
        head.into_bytes(),
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    )
}

/// The boundary of a `multipart/mixed` content type, or `None` for any other type or a
/// boundary RFC 2046 does not allow (1 to 70 characters).
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = split_params(content_type).into_iter();
    let essence = params.next()?;
    if !essence.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params
        .filter_map(|p| param(&p))
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .filter(|b| (1..=70).contains(&b.len()) && !b.contains(['\r', '\n']))
}

/// Splits `body` into its parts (preamble and epilogue dropped). An error names what is
/// wrong: no opening or closing delimiter, or a part with malformed headers.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let dash = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut at = if body.starts_with(dash.as_bytes()) {
        0
    } else {
        find(body, next_delimiter.as_bytes())
            .map(|i| i + 2)
            .ok_or("no opening boundary")?
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[at + dash.len()..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then the line break that ends the delimiter line.
        let padding = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let rest = rest[padding..]
            .strip_prefix(b"\r\n")
            .ok_or("a boundary line does not end in CRLF")?;
        let end = find(rest, next_delimiter.as_bytes()).ok_or("no closing boundary")?;
        parts.push(part(&rest[..end])?);
        // `rest` starts `dash.len() + padding + 2` bytes after `at`.
        at += dash.len() + padding + 2 + end + 2;
    }
}

fn part(raw: &[u8]) -> Result<Part<'_>, String> {
    let (head, body) = if let Some(body) = raw.strip_prefix(b"\r\n") {
        (&raw[..0], body)
    } else {
        let split = find(raw, b"\r\n\r\n").ok_or("a part has no end of headers")?;
        (&raw[..split], &raw[split + 4..])
    };
    let head = std::str::from_utf8(head).map_err(|_| "part headers are not UTF-8")?;
    let mut headers = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("`{line}` is not a header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Part { headers, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The file name a `Content-Disposition` value gives: `filename*` (RFC 8187, UTF-8)
/// before `filename`. `None` when there is none or it cannot be decoded.
pub fn disposition_filename(value: &str) -> Option<String> {
    let params: Vec<(String, String)> = split_params(value)
        .iter()
        .skip(1)
        .filter_map(|p| param(p))
        .collect();
    let extended = params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("filename*"))
        .and_then(|(_, v)| decode_ext_value(v));
    extended
        .or_else(|| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("filename"))
                .map(|(_, v)| v.clone())
        })
        .filter(|name| !name.is_empty())
}

/// `UTF-8'lang'percent-encoded` (RFC 8187 ext-value); other charsets are not decoded.
fn decode_ext_value(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let charset = pieces.next()?;
    let _language = pieces.next()?;
    let encoded = pieces.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let mut bytes = Vec::new();
    let mut iter = encoded.bytes();
    while let Some(b) = iter.next() {
        if b == b'%' {
            let hex = [iter.next()?, iter.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

/// Splits a header value at the `;` that are not inside quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            pieces.push(String::new());
            continue;
        }
        if let Some(last) = pieces.last_mut() {
            last.push(c);
        }
    }
    pieces
}

/// `name=value` or `name="quoted value"`, unquoted.
fn param(piece: &str) -> Option<(String, String)> {
    let (name, value) = piece.split_once('=')?;
    let value = value.trim();
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.extend(chars.next());
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => value.to_owned(),
    };
    Some((name.trim().to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_kith_sends_it_reads_back() {
        let boundary = new_boundary();
        let media = b"\x89PNG\r\n--not-the-boundary\r\n\r\nbytes";
        let (head, tail) = envelope(
            &boundary,
            &[
                ("Content-Type", "image/png"),
                ("Content-Disposition", "inline; filename=\"cat.png\""),
            ],
        );
        let body = [head.as_slice(), media, tail.as_slice()].concat();
        let content_type = format!("multipart/mixed; boundary={boundary}");
        let parsed_boundary = boundary_of(&content_type);
        let parts = parse(&body, &parsed_boundary).expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].header("content-type"), Some("application/json"));
        assert_eq!(parts[0].body, b"{}");
        assert_eq!(parts[1].header("content-type"), Some("image/png"));
        assert_eq!(parts[1].body, media);
        assert_eq!(
            parts[1]
                .header("content-disposition")
                .and_then(disposition_filename),
            Some("cat.png".to_owned())
        );
    }

    fn boundary_of(content_type: &str) -> String {
        boundary(content_type).expect("a boundary")
    }

    #[test]
    fn synapse_style_bodies_with_preamble_padding_and_headerless_parts_parse() {
        let body = b"preamble\r\n--b1 \r\nContent-Type: application/json\r\n\r\n{}\r\n--b1\r\n\r\nraw\r\n--b1--\r\nepilogue";
        let parts = parse(body, "b1").expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].headers, vec![]);
        assert_eq!(parts[1].body, b"raw");
    }

    #[test]
    fn boundaries_come_only_from_multipart_mixed() {
        assert_eq!(
            boundary("multipart/mixed; boundary=\"a b\""),
            Some("a b".to_owned())
        );
        assert_eq!(
            boundary("Multipart/Mixed;charset=x; Boundary=z"),
            Some("z".to_owned())
        );
        assert_eq!(boundary("multipart/form-data; boundary=z"), None);
        assert_eq!(boundary("multipart/mixed"), None);
        assert_eq!(
            boundary(&format!("multipart/mixed; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn broken_bodies_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"--b",
            b"--b\r\n",
            b"--bX",
            b"--b\r\nno header end\r\n--b--",
            b"--b\r\nnot a header\r\n\r\nx\r\n--b--",
            b"--b\r\n\r\nunterminated",
            b"\r\n--b",
        ] {
            assert!(
                parse(body, "b").is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse(b"--b--", "b"), Ok(vec![]));
    }

    #[test]
    fn file_names_prefer_the_utf8_form() {
        assert_eq!(
            disposition_filename("attachment; filename=\"a;b.txt\""),
            Some("a;b.txt".to_owned())
        );
        assert_eq!(
            disposition_filename("inline; filename=plain.png"),
            Some("plain.png".to_owned())
        );
        assert_eq!(
            disposition_filename(
                "inline; filename=\"fallback.png\"; filename*=UTF-8''caf%C3%A9.png"
            ),
            Some("café.png".to_owned())
        );
        assert_eq!(
            disposition_filename("inline; filename*=UTF-8''bad%ZZ; filename=ok.png"),
            Some("ok.png".to_owned())
        );
        assert_eq!(disposition_filename("inline"), None);
        assert_eq!(disposition_filename("inline; filename=\"\""), None);
    }
}
