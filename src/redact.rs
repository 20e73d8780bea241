//! Keeping secrets out of the logs.
//!
//! vigile's own events (targets `vigile::...`) never carry a credential. The
//! libraries' do: Pingora logs through the `log` crate (bridged into
//! `tracing`, target `log`) and, at one level or another, dumps raw request
//! buffers (`buf: ...` in a refused head's error), request and response
//! headers (`Authorization` included), request targets with their query
//! strings, and body bytes, in several forms: byte strings (`b"..."`), the
//! chunked-body parser's `{:?}` of `str::EscapeDefault` (a list of quoted
//! characters, `Chars(['{', '"', 'p', ...])`, one per body byte), lists of
//! byte values. Every line of an event that is not vigile's goes through
//! [`redact`] before it is written: body dumps in any of these forms become
//! `[body redacted]`, to the end of the line, whatever they hold; the query
//! string of a request target in a request head (`uri: /x?t=...`, `GET
//! /x?t=..., Host: h`) becomes `?<redacted>`; credential headers, bearer and
//! basic credentials, JWTs, secret-named fields and parameters, raw buffers
//! and byte strings become `<redacted>`. vigile's own lines (the access log)
//! are written as they are, at no cost.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::LazyLock;

use regex::Regex;
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

const REDACTED: &str = "<redacted>";
/// What replaces a dump of body content, whatever it held.
const BODY_REDACTED: &str = "[body redacted]";

/// Header names whose values are credentials.
const SECRET_HEADERS: &str = "authorization|proxy-authorization|cookie|set-cookie|x-admin-token|\
     x-api-key|x-auth-token|x-csrf-token";
/// Field or parameter names that hold secrets (`password`, `old_password`,
/// `refresh`, `access_token`, `token`...).
const SECRET_NAMES: &str =
    r"[a-z_\-]*(?:password|passw|passwd|secret|token|refresh|access)[a-z_\-]*";

struct Rules {
    /// A body dumped through a `Debug` of a character iterator (Pingora's
    /// chunk parser logs `{:?}` of `str::EscapeDefault`, which shows its
    /// `Chars([...])`), or a list of quoted characters: the rest of the line.
    char_dump: Regex,
    /// A list of byte values (`[123, 34, 112, ...]`, a `Vec<u8>` in `Debug`
    /// form).
    byte_list: Regex,
    /// The one or two body bytes quoted in a chunk-framing error (`xy was
    /// not CRLF`).
    framing_bytes: Regex,
    /// The query string of a request head's target in `Debug` form (`uri:
    /// /x?t=..., version: ...`).
    uri_query: Regex,
    /// The query string in Pingora's request summary (`GET /x?t=..., Host: h`).
    summary_query: Regex,
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
    // One character as `Debug` writes it: 'a', '\'', '\\', '\u{1f}'.
    let char_literal = r"'(?:\\u\{[0-9A-Fa-f]{1,6}\}|\\.|[^'\\])'";
    Some(Rules {
        char_dump: Regex::new(&format!(
            r"(?:\b(?:EscapeDefault|EscapeDebug|EscapeUnicode|EscapeAscii|CharIndices|Chars|Utf8Chunks)\s*[{{(\[]|\[\s*{char_literal}\s*,).*"
        ))
        .ok()?,
        byte_list: Regex::new(r"\[\s*\d{1,3}(?:\s*,\s*\d{1,3}){3,}\s*,?\s*(?:\]|$)").ok()?,
        framing_bytes: Regex::new(r"(Invalid chunked encoding: ).{0,24}?( was not (?:CRLF|CR|LF))")
            .ok()?,
        uri_query: Regex::new(r"(?m)(\buri: [^\s?]*)\?\S*?(,?(?:\s|$))").ok()?,
        summary_query: Regex::new(
            r"(\b[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]* [^\s?]*)\?\S*?(, Host: )",
        )
        .ok()?,
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
    let replacements: [(&Regex, &str); 13] = [
        (&rules.char_dump, BODY_REDACTED),
        (&rules.byte_list, BODY_REDACTED),
        (&rules.framing_bytes, "${1}[body redacted]${2}"),
        (&rules.uri_query, "${1}?<redacted>${2}"),
        (&rules.summary_query, "${1}?<redacted>${2}"),
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

    /// What Pingora's chunked-body parser writes (`{:?}` of
    /// `str::EscapeDefault`), made here as Pingora makes it.
    fn chunk_dump(body: &str) -> String {
        format!(
            "{:?}",
            String::from_utf8_lossy(body.as_bytes()).escape_default()
        )
    }

    /// `secret` as a list of quoted characters, as the dumps spread it.
    fn spread(secret: &str) -> String {
        secret
            .chars()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn body_dumps_never_reach_the_log_in_any_form() {
        let body =
            format!(r#"3f\r\n{{"email":"a@b.c","password":"hunter2hunter2","refresh":"{JWT}"}}"#);
        let dump = chunk_dump(&body);
        assert!(
            dump.contains(&spread("hunter2")),
            "the form Pingora writes: {dump}"
        );
        for line in [
            format!("TRACE pingora_core::protocols::http::v1::body: Got size 63, payload_index: 4, chunk: {dump}"),
            format!("DEBUG Invalid chunked encoding: InvalidChunkSize, {dump}"),
            format!("TRACE Parsing chunk end for buf {dump}, resume at 3"),
            format!("TRACE chars {:?}", body.chars().collect::<Vec<_>>()),
            format!("TRACE raw {:?}", body.as_bytes().to_vec()),
            format!("TRACE {:?}", body.chars()),
        ] {
            let out = redact(&line);
            for secret in ["hunter2hunter2", JWT] {
                assert!(!out.contains(secret), "{out}");
                assert!(!out.contains(&spread(&secret[..8])), "{out}");
            }
            assert!(out.contains(BODY_REDACTED), "{out}");
        }
        // What comes before the dump stays readable.
        let line = format!("DEBUG Invalid chunked encoding: InvalidChunkSize, {dump}");
        let out = redact(&line);
        assert_eq!(
            out,
            "DEBUG Invalid chunked encoding: InvalidChunkSize, [body redacted]"
        );
        // The bytes a framing error quotes.
        let out =
            redact("ERROR Fail to proxy: Invalid chunked encoding: hu was not CRLF, status: 400");
        assert_eq!(
            out,
            "ERROR Fail to proxy: Invalid chunked encoding: [body redacted] was not CRLF, status: 400"
        );
        // In a JSON line too.
        let line = serde_json::json!({"level": "DEBUG", "message": format!("Invalid chunked encoding: InvalidChunkSize, {dump}")}).to_string();
        let out = redact_json_line(&line);
        assert!(
            !out.contains("hunter2") && !out.contains(&spread("hunter2")),
            "{out}"
        );
        assert!(!out.contains(r#"'h', 'u'"#), "{out}");
    }

    #[test]
    fn query_strings_of_request_heads_are_redacted() {
        let token = "DeBqF2PlP_DMM3Ex0zCiIBusMkoeP9chZfEtWfla5HM";
        let head = format!(
            "TRACE pingora_proxy: Request header: Parts {{ method: GET, uri: /api/x/reset?t={token}&a=b,c, version: HTTP/1.1, headers: {{\"host\": \"h\"}} }}"
        );
        let out = redact(&head);
        assert!(!out.contains(token), "{out}");
        assert!(
            out.contains("uri: /api/x/reset?<redacted>, version: HTTP/1.1"),
            "{out}"
        );
        let upstream = format!("DEBUG Sending header to upstream RequestHeader {{ base: Parts {{ method: GET, uri: http://h/x?t={token}, version: HTTP/1.1 }}");
        assert!(!redact(&upstream).contains(token));
        let summary = format!("ERROR pingora_proxy: Fail to proxy: Upstream ConnectRefused, status: 502, tries: 1, retry: false, GET /api/dead/reset-password?t={token}, Host: 127.0.0.1:1");
        let out = redact(&summary);
        assert!(!out.contains(token), "{out}");
        assert!(
            out.ends_with("GET /api/dead/reset-password?<redacted>, Host: 127.0.0.1:1"),
            "{out}"
        );
        // A path without a query is left as it is.
        let plain =
            "TRACE Request header: Parts { method: GET, uri: /api/stocks/1, version: HTTP/1.1 }";
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
