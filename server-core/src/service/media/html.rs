//! A small, bounded reader of the OpenGraph data in an HTML page: the `og:*` `<meta>` tags,
//! `<title>` and the `description` meta tag (spec: content_repo.md, `preview_url`: "The
//! OpenGraph data for the URL"). It is not an HTML parser: it scans tags in one pass over a
//! prefix of the page that the caller has already bounded, and skips comments, scripts and
//! styles. What it misses, the preview lacks; it never fails.

use std::collections::BTreeMap;

/// At most this many `og:` keys are kept.
const MAX_KEYS: usize = 64;
/// Values are cut to this many characters.
const MAX_VALUE_CHARS: usize = 2000;

/// The OpenGraph keys found in `html`, with `og:title` from `<title>` and `og:description`
/// from `<meta name="description">` when the page has none of its own.
pub fn opengraph(html: &str) -> BTreeMap<String, String> {
    let lower = html.to_ascii_lowercase();
    let mut og = BTreeMap::new();
    let mut title = None;
    let mut description = None;
    let mut pos = 0;
    while let Some(offset) = lower[pos..].find('<') {
        let start = pos + offset;
        let rest = &lower[start..];
        if rest.starts_with("<!--") {
            pos = skip_past(&lower, start + 4, "-->");
            continue;
        }
        if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            pos = start + 1;
            continue;
        }
        let name_end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(lower.len(), |n| start + 1 + n);
        let name = &lower[start + 1..name_end];
        let (attrs, tag_end) = attributes(html, &lower, name_end);
        pos = tag_end;
        match name {
            "script" | "style" | "noscript" | "template" => {
                pos = skip_past(&lower, pos, &format!("</{name}"));
            }
            "title" if title.is_none() => {
                let end = lower[pos..]
                    .find("</title")
                    .map_or(lower.len(), |n| pos + n);
                title = Some(clean(&decode_entities(&html[pos..end])));
                pos = end;
            }
            "meta" => {
                let get = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                let (Some(content), Some(key)) =
                    (get("content"), get("property").or_else(|| get("name")))
                else {
                    continue;
                };
                let key = key.to_ascii_lowercase();
                if key.starts_with("og:") && og.len() < MAX_KEYS {
                    og.entry(key).or_insert_with(|| clean(content));
                } else if key == "description" && description.is_none() {
                    description = Some(clean(content));
                }
            }
            _ => {}
        }
    }
    if let Some(title) = title.filter(|t| !t.is_empty()) {
        og.entry("og:title".to_owned()).or_insert(title);
    }
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        og.entry("og:description".to_owned()).or_insert(description);
    }
    og
}

/// The index just past the next `needle` at or after `from`, or the end.
fn skip_past(lower: &str, from: usize, needle: &str) -> usize {
    lower
        .get(from..)
        .and_then(|s| s.find(needle))
        .map_or(lower.len(), |n| from + n + needle.len())
}

/// Parses attributes from `pos` (just after the tag name) to the closing `>`. Returns them
/// (names lowercased, values entity-decoded) and the index after the `>`.
fn attributes(html: &str, lower: &str, mut pos: usize) -> (Vec<(String, String)>, usize) {
    let bytes = lower.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b'/') {
            pos += 1;
        }
        if pos >= bytes.len() {
            return (attrs, pos);
        }
        if bytes[pos] == b'>' {
            return (attrs, pos + 1);
        }
        let name_start = pos;
        while pos < bytes.len()
            && !bytes[pos].is_ascii_whitespace()
            && !matches!(bytes[pos], b'=' | b'>' | b'/')
        {
            pos += 1;
        }
        let name = lower[name_start..pos].to_owned();
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let mut value = String::new();
        if pos < bytes.len() && bytes[pos] == b'=' {
            pos += 1;
            while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if pos < bytes.len() && matches!(bytes[pos], b'"' | b'\'') {
                let quote = bytes[pos];
                let value_start = pos + 1;
                let end = bytes[value_start..]
                    .iter()
                    .position(|&b| b == quote)
                    .map_or(bytes.len(), |n| value_start + n);
                value = decode_entities(&html[value_start..end]);
                pos = (end + 1).min(bytes.len());
            } else {
                let value_start = pos;
                while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() && bytes[pos] != b'>' {
                    pos += 1;
                }
                value = decode_entities(&html[value_start..pos]);
            }
        }
        if !name.is_empty() {
            attrs.push((name, value));
        } else if pos == name_start {
            // A stray character (e.g. `"`) that began no attribute: step over it, a whole
            // UTF-8 character, rather than loop forever. After `=value` nothing is skipped.
            pos += lower[pos..].chars().next().map_or(1, char::len_utf8);
        }
    }
}

/// Decodes the common named entities and numeric character references.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses whitespace and bounds the length.
fn clean(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_VALUE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::opengraph;

    #[test]
    fn reads_opengraph_tags_title_and_description() {
        let html = r#"<!DOCTYPE html><html><head>
            <!-- <meta property="og:title" content="commented out"> -->
            <TITLE>  The &amp; page
            </TITLE>
            <script>var s = "<meta property='og:type' content='evil'>";</script>
            <meta property="og:site_name" content='Kith &quot;test&quot;'>
            <meta name=description content="A page &#x2014; described">
            <meta property="og:image" content="https://example.org/a.png"/>
            </head><body><p>x < y</p></body></html>"#;
        let og = opengraph(html);
        assert_eq!(og["og:title"], "The & page");
        assert_eq!(og["og:site_name"], "Kith \"test\"");
        assert_eq!(og["og:description"], "A page \u{2014} described");
        assert_eq!(og["og:image"], "https://example.org/a.png");
        assert!(!og.contains_key("og:type"));
    }

    #[test]
    fn survives_truncated_and_malformed_markup() {
        for html in [
            "<",
            "<meta",
            "<meta property=\"og:title",
            "<title>never closed",
            "<!-- never closed",
            "<a =b \"c\" ='d'>",
            "<script>",
            "&#xFFFFFFFF; &#; &",
            // An empty attribute name before `=` at the very end, and before a multi-byte
            // character: both once panicked.
            "<a =",
            "<a =\"x\"é>",
            "<a = é",
            "<a ==é\"'>",
        ] {
            let _ = opengraph(html);
        }
        assert_eq!(opengraph("<title>never closed")["og:title"], "never closed");
    }
}
