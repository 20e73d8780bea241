//! Keeping secrets out of the logs.
//!
//! vigile's own events (targets `vigile::...`) never carry a credential. The
//! libraries' do: Pingora logs through the `log` crate (bridged into
//! `tracing`, target `log`) and, at one level or another, dumps raw request
//! buffers (`buf: ...` in a refused head's error), request and response
//! headers (`Authorization` included), and body bytes. Every line of an event
//! that is not vigile's goes through [`redact`] before it is written:
//! credential headers, bearer and basic credentials, JWTs, secret-named
//! fields and parameters, raw buffers and byte strings are replaced by
//! `<redacted>`. vigile's own lines (the access log) are written as they are,
//! at no cost.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::LazyLock;

use regex::Regex;
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

const REDACTED: &str = "<redacted>";

/// Header names whose values are credentials.
const SECRET_HEADERS: &str = "authorization|proxy-authorization|cookie|set-cookie|x-admin-token|\
     x-api-key|x-auth-token|x-csrf-token";
/// Field or parameter names that hold secrets (`password`, `old_password`,
/// `refresh`, `access_token`, `token`...).
const SECRET_NAMES: &str =
    r"[a-z_\-]*(?:password|passw|passwd|secret|token|refresh|access)[a-z_\-]*";

struct Rules {
    /// The rest of a raw buffer dump (`buf: ...`).
    buffer: Regex,
    /// A byte string in `Debug` form (`b"..."`): bodies, raw heads.
    bytes: Regex,
    /// `"authorization": "..."` (a header map in `Debug` form).
    quoted_header: Regex,
    /// `Authorization: ...` (a header on the wire, or in free text).
    wire_header: Regex,
    /// `"password": "..."` and the like.
    quoted_field: Regex,
    /// `password=...` and the like (query strings, forms).
    parameter: Regex,
    /// `Bearer ...` / `Basic ...`.
    scheme: Regex,
    /// A JWT anywhere.
    jwt: Regex,
}

static RULES: LazyLock<Option<Rules>> = LazyLock::new(|| {
    Some(Rules {
        buffer: Regex::new(r"(?i)\bbuf: .*").ok()?,
        bytes: Regex::new(r#"\bb"(?:[^"\\]|\\.)*"?"#).ok()?,
        quoted_header: Regex::new(&format!(
            r#"(?i)\\*"({SECRET_HEADERS})\\*"\s*:\s*(?:b?\\*"(?:[^"\\]|\\.)*"?|\S+)"#
        ))
        .ok()?,
        wire_header: Regex::new(&format!(r#"(?i)\b({SECRET_HEADERS})\s*:\s*[^\r\n"]*"#)).ok()?,
        quoted_field: Regex::new(&format!(
            r#"(?i)\\*"({SECRET_NAMES})\\*"\s*:\s*(?:\\*"(?:[^"\\]|\\.)*"?|[^,}}\s]+)"#
        ))
        .ok()?,
        parameter: Regex::new(&format!(r#"(?i)\b({SECRET_NAMES})=[^&\s"',;]*"#)).ok()?,
        scheme: Regex::new(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+").ok()?,
        jwt: Regex::new(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*)?").ok()?,
    })
});

/// `text` without credentials (see the module's rules). If the rules could
/// not be built, nothing of the text is kept.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(rules) = RULES.as_ref() else {
        return Cow::Borrowed(REDACTED);
    };
    let mut out = Cow::Borrowed(text);
    let replacements: [(&Regex, &str); 8] = [
        (&rules.buffer, "buf: <redacted>"),
        (&rules.bytes, "b\"<redacted>\""),
        (&rules.quoted_header, "\"$1\": \"<redacted>\""),
        (&rules.wire_header, "$1: <redacted>"),
        (&rules.quoted_field, "\"$1\": \"<redacted>\""),
        (&rules.parameter, "$1=<redacted>"),
        (&rules.scheme, "$1 <redacted>"),
        (&rules.jwt, REDACTED),
    ];
    for (rule, with) in replacements {
        if let Cow::Owned(changed) = rule.replace_all(&out, with) {
            out = Cow::Owned(changed);
        }
    }
    out
}

/// A JSON log line with every string value redacted. A line that is not
/// JSON is redacted as text.
fn redact_json_line(line: &str) -> String {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(line.trim_end()) {
        Ok(mut value) => {
            walk(&mut value);
            let mut text = value.to_string();
            text.push('\n');
            text
        }
        Err(_) => redact(line).into_owned(),
    }
}

/// The log writer: stderr, through [`redact`] for events that are not
/// vigile's.
#[derive(Clone, Copy)]
pub struct LogWriter {
    json: bool,
}

impl LogWriter {
    pub fn new(json: bool) -> LogWriter {
        LogWriter { json }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter::Redacting {
            line: Vec::new(),
            json: self.json,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        let target = meta.target();
        if target == "vigile" || target.starts_with("vigile::") {
            LineWriter::Direct(io::stderr())
        } else {
            self.make_writer()
        }
    }
}

/// One event's output. The formatter writes an event whole, then drops the
/// writer: a redacting writer keeps the line and writes it, redacted, on drop.
pub enum LineWriter {
    Direct(io::Stderr),
    Redacting { line: Vec<u8>, json: bool },
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Direct(out) => out.write(buf),
            LineWriter::Redacting { line, .. } => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Direct(out) => out.flush(),
            LineWriter::Redacting { .. } => Ok(()),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if let LineWriter::Redacting { line, json } = self {
            if line.is_empty() {
                return;
            }
            let text = String::from_utf8_lossy(line);
            let clean = if *json {
                Cow::Owned(redact_json_line(&text))
            } else {
                redact(&text)
            };
            let _ = io::stderr().lock().write_all(clean.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    const OPERATOR: &str = "q8dR3mZk1xYv-_Tn0pLs9cWfHjU2aBeK4oQ7iMgN5yE";

    fn assert_clean(line: &str, secrets: &[&str]) {
        let out = redact(line);
        for secret in secrets {
            assert!(!out.contains(secret), "{secret:?} left in {out:?}");
        }
    }

    #[test]
    fn raw_buffers_of_refused_heads() {
        let line = format!(
            "DEBUG Fail to proxy: Downstream InvalidHTTPHeader context: buf: GET /x HTTP/1.1\\r\\n\
             Authorization: Bearer {OPERATOR}\\r\\nX-Bad\\x01: 1\\r\\n\\r\\n cause: invalid header name"
        );
        assert_clean(&line, &[OPERATOR]);
        assert!(redact(&line).contains("Fail to proxy: Downstream InvalidHTTPHeader"));
        let bstr = format!("ERROR HTTP server fails to read from downstream: InvalidHTTPHeader context: buf: \"POST / HTTP/1.1\\r\\nauthorization: Basic {OPERATOR}\\r\\n\\r\\n{{\\\"password\\\":\\\"hunter2hunter2\\\"}}\"");
        assert_clean(&bstr, &[OPERATOR, "hunter2hunter2"]);
    }

    #[test]
    fn headers_in_debug_form() {
        let line = format!(
            "TRACE Request header: RequestHeader {{ base: Parts {{ method: GET, uri: /api/stocks/, \
             headers: {{\"host\": \"x\", \"authorization\": \"Bearer {JWT}\", \"x-admin-token\": \"{OPERATOR}\", \
             \"cookie\": \"sessionid=abc123secretcookie\"}} }}, header_name_map: Some({{CaseHeaderName(b\"Authorization\")}}) }}"
        );
        assert_clean(&line, &[JWT, OPERATOR, "abc123secretcookie"]);
        let wire = format!("TRACE Writing request header: b\"GET / HTTP/1.1\\r\\nAuthorization: Bearer {JWT}\\r\\n\\r\\n\"");
        assert_clean(&wire, &[JWT]);
        let body = "TRACE Response body: Some(b\"{\\\"access\\\":\\\"abc.def.ghi\\\",\\\"password\\\":\\\"s3cr3t-pass\\\"}\")";
        assert_clean(body, &["s3cr3t-pass", "abc.def.ghi"]);
    }

    #[test]
    fn credentials_in_free_text_and_query_strings() {
        assert_clean(
            &format!(
                "ERROR Fail to proxy: ..., GET /api/x?access_token={OPERATOR}&page=2, Host: h"
            ),
            &[OPERATOR],
        );
        assert_clean(
            &format!("WARN something Bearer {OPERATOR} else"),
            &[OPERATOR],
        );
        assert_clean(&format!("WARN token {JWT} seen"), &[JWT]);
        assert_clean(
            "INFO form password=hunter2hunter2&email=a@b.c",
            &["hunter2hunter2"],
        );
        assert_clean(
            r#"DEBUG body {"old_password": "oldsecret1", "new_password":"newsecret2"}"#,
            &["oldsecret1", "newsecret2"],
        );
        // JSON inside a string in `Debug` form: escaped quotes.
        assert_clean(
            r#"DEBUG body: "{\"email\":\"a@b.c\",\"password\":\"hunter2hunter2\"}""#,
            &["hunter2hunter2"],
        );
        assert_clean(
            r#"DEBUG headers: "{\"authorization\": \"Token opaque-credential-42\"}""#,
            &["opaque-credential-42"],
        );
        // What is not secret stays.
        let plain =
            "ERROR Fail to proxy: Upstream ConnectRefused, status: 502, GET /api/stocks/1, Host: h";
        assert_eq!(redact(plain), plain);
    }

    #[test]
    fn json_lines_are_redacted_inside_their_strings() {
        let line = serde_json::json!({
            "timestamp": "t",
            "level": "DEBUG",
            "message": format!("Request header: {{\"authorization\": \"Bearer {OPERATOR}\"}}"),
            "log.target": "pingora_proxy",
        })
        .to_string();
        let out = redact_json_line(&line);
        assert!(!out.contains(OPERATOR), "{out}");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(parsed["level"], "DEBUG");
    }
}
