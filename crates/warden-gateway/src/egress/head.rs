//! The proxy's request head: parsed strictly (with `httparse`, plus the
//! checks it leaves to the caller), and re-serialized for the upstream from
//! the parsed pieces, never copied line by line. What the proxy checked is
//! then exactly what the upstream reads: no bare CR or LF, no obs-fold, no
//! control bytes, one framing (`Content-Length` or none), one `Host` that
//! agrees with the target, no hop-by-hop headers, `Connection: close`.

use std::net::Ipv6Addr;

/// Most header lines one head may carry.
const MAX_HEADERS: usize = 64;

/// Why a request head was refused (each is a 400 to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head has a bare CR or LF; end every line with CRLF")]
    BareLineBreak,
    #[error("malformed request head ({0}); send an HTTP/1.1 request")]
    Syntax(String),
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("bytes after the end of the request head")]
    TrailingBytes,
    #[error("header {name}: {why}")]
    Header { name: String, why: &'static str },
    #[error("request framing: {0}")]
    Framing(&'static str),
    #[error("request target: {0}")]
    Target(String),
    #[error("the Host header {host:?} names another destination than the request target")]
    HostMismatch { host: String },
}

/// Where the request goes, as the request line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `CONNECT host:port`: a tunnel.
    Connect,
    /// `GET http://host[:port]/path?query`: what a forward proxy receives.
    Absolute,
    /// `GET /path?query` with the destination in `Host`: what an origin
    /// server receives (the proxy refuses it; its own output parses so).
    Origin,
}

/// A validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub form: Form,
    /// As received (case kept: the inspector sees what was sent), without
    /// IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Path and query exactly as received (`None` for a tunnel).
    pub path: Option<String>,
    /// End-to-end headers in order, as received; hop-by-hop headers, `Host`
    /// and the framing are not among them (they are re-made on output).
    pub headers: Vec<(String, String)>,
    /// The proxy credentials (never forwarded).
    pub proxy_authorization: Option<String>,
    /// The body's length; `None` when the request declared none.
    pub content_length: Option<u64>,
    /// The client sent `Expect: 100-continue` (the proxy answers it itself).
    pub expect_continue: bool,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the proxy's own): consumed here,
/// never forwarded.
const HOP_BY_HOP: &[&str] =
    &["connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade", "expect"];

/// Parse one request head: `bytes` is everything up to and including the
/// blank line that ends it.
pub fn parse_request_head(bytes: &[u8]) -> Result<RequestHead, HeadError> {
    // httparse accepts a bare LF as a line end; a lenient upstream might
    // split differently from the proxy, so there is only one reading: CRLF.
    for (i, b) in bytes.iter().enumerate() {
        let ok = match b {
            b'\n' => i > 0 && bytes[i - 1] == b'\r',
            b'\r' => bytes.get(i + 1) == Some(&b'\n'),
            _ => true,
        };
        if !ok {
            return Err(HeadError::BareLineBreak);
        }
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let used = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HeadError::Syntax("incomplete".into())),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Syntax(e.to_string())),
    };
    if used != bytes.len() {
        return Err(HeadError::TrailingBytes);
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HeadError::Syntax("no request line".into()));
    };
    if !target.is_ascii() {
        return Err(HeadError::Target("not ASCII; percent-encode it".into()));
    }

    let mut host_header = None;
    let mut proxy_authorization = None;
    let mut content_length = None;
    let mut expect_continue = false;
    // The upstream reads our `Connection: close` as naming a `Close`
    // header hop-by-hop, so the proxy does too.
    let mut connection_named: Vec<String> = vec!["close".into()];
    let mut headers = Vec::new();
    for h in req.headers.iter() {
        let name = h.name.to_string();
        let bad = |why| HeadError::Header { name: name.clone(), why };
        // httparse passes obs-text and DEL; only visible ASCII, space, tab
        // and UTF-8 are kept, so every reader sees the same value.
        if h.value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("control byte in the value"));
        }
        let value = std::str::from_utf8(h.value).map_err(|_| bad("value is not UTF-8"))?.trim_matches([' ', '\t']).to_string();
        let lower = name.to_ascii_lowercase();
        let once = |slot: &mut Option<String>, v: String| match slot {
            Some(_) => Err(bad("sent more than once")),
            None => {
                *slot = Some(v);
                Ok(())
            }
        };
        match lower.as_str() {
            "host" => once(&mut host_header, value)?,
            "proxy-authorization" => once(&mut proxy_authorization, value)?,
            "content-length" => {
                if content_length.is_some() {
                    return Err(HeadError::Framing("Content-Length sent more than once"));
                }
                if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeadError::Framing("Content-Length is not a decimal number"));
                }
                content_length = Some(value.parse::<u64>().map_err(|_| HeadError::Framing("Content-Length is not a decimal number"))?);
            }
            // Chunked uploads are not forwarded; refusing the header outright
            // (rather than picking one of CL and TE) leaves no second reading.
            "transfer-encoding" => return Err(HeadError::Framing("Transfer-Encoding is refused; send the body with Content-Length")),
            "expect" => {
                if !value.eq_ignore_ascii_case("100-continue") {
                    return Err(bad("only 100-continue is supported"));
                }
                expect_continue = true;
            }
            "connection" => connection_named.extend(value.split(',').map(|t| t.trim().to_ascii_lowercase()).filter(|t| !t.is_empty())),
            l if HOP_BY_HOP.contains(&l) => {}
            _ => headers.push((name, value)),
        }
    }
    headers.retain(|(k, _)| !connection_named.contains(&k.to_ascii_lowercase()));
    // The rebuilt head adds Host, Content-Length and Connection: it must fit
    // the same limit.
    if headers.len() + 3 > MAX_HEADERS {
        return Err(HeadError::TooManyHeaders);
    }

    let (form, host, port, path) = if method == "CONNECT" {
        if content_length.is_some() {
            return Err(HeadError::Framing("a CONNECT request has no body"));
        }
        let (host, port) = authority(target, None)?;
        (Form::Connect, host, port, None)
    } else if target.starts_with('/') {
        let host = host_header.as_deref().ok_or_else(|| HeadError::Target("an origin-form request needs a Host header".into()))?;
        let (h, p) = authority(host, Some(80))?;
        (Form::Origin, h, p, Some(origin_path(target)?))
    } else {
        let rest = target
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("http://"))
            .map(|_| &target[7..])
            .ok_or_else(|| HeadError::Target("only absolute http:// URLs are forwarded; use CONNECT for https".into()))?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (h, p) = authority(&rest[..end], Some(80))?;
        let path = match &rest[end..] {
            "" => "/".to_string(),
            p if p.starts_with('?') => origin_path(&format!("/{p}"))?,
            p => origin_path(p)?,
        };
        (Form::Absolute, h, p, Some(path))
    };
    if let Some(hh) = &host_header {
        let default = (form != Form::Connect).then_some(80);
        let same = authority(hh, default).is_ok_and(|(h, p)| p == port && h.eq_ignore_ascii_case(&host));
        if !same {
            return Err(HeadError::HostMismatch { host: hh.clone() });
        }
    }
    Ok(RequestHead { method: method.to_string(), form, host, port, path, headers, proxy_authorization, content_length, expect_continue })
}

/// A path (and query) in origin form: no fragment.
fn origin_path(p: &str) -> Result<String, HeadError> {
    if p.contains('#') {
        return Err(HeadError::Target("a fragment (#) is never sent to a server".into()));
    }
    Ok(p.to_string())
}

/// `host[:port]` or `[v6][:port]`; the port is required when `default` is
/// `None`. Host names are LDH labels (plus `_`): no userinfo, no spaces, no
/// percent-encoding, so every reader resolves the same name.
fn authority(s: &str, default: Option<u16>) -> Result<(String, u16), HeadError> {
    let bad = |why: &str| HeadError::Target(format!("{why} in {s:?}"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(|| bad("unclosed IPv6 literal"))?;
        v6.parse::<Ipv6Addr>().map_err(|_| bad("bad IPv6 address"))?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|&n| n != 0).ok_or_else(|| bad("bad port"))?
        }
        Some(_) => return Err(bad("bad port")),
        None => default.ok_or_else(|| bad("a port is required"))?,
    };
    let ldh = |h: &str| !h.is_empty() && h.len() <= 253 && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !(s.starts_with('[') || ldh(host)) {
        return Err(bad("bad host"));
    }
    Ok((host.to_string(), port))
}

impl RequestHead {
    /// `host[:port]` as a `Host` header value (the port only when not 80).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 { host } else { format!("{host}:{}", self.port) }
    }

    /// The head to send upstream for plain HTTP: origin form, from the
    /// validated pieces only, one request per connection.
    pub fn to_upstream(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", self.method, self.path.as_deref().unwrap_or("/"), self.host_header());
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(n) = self.content_length {
            out.push_str(&format!("Content-Length: {n}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// The invariants the fuzz target (`fuzz/`) and the property test check on
/// one input, shared so both exercise the same thing.
#[doc(hidden)]
pub mod fuzz {
    use super::*;

    /// Parse `data`; when accepted, its upstream form must parse again to
    /// the same request, with no bare CR/LF and exactly one framing.
    /// Panics on a violation.
    pub fn exercise(data: &[u8]) {
        let Ok(head) = parse_request_head(data) else { return };
        if head.form == Form::Connect {
            assert!(head.path.is_none() && head.content_length.is_none());
            return;
        }
        let out = head.to_upstream();
        let again = parse_request_head(&out).unwrap_or_else(|e| panic!("re-serialized head refused: {e}\n{}", String::from_utf8_lossy(&out)));
        assert_eq!(again.form, Form::Origin);
        assert_eq!(
            (&again.method, again.host.to_ascii_lowercase(), again.port, &again.path, &again.headers, again.content_length),
            (&head.method, head.host.to_ascii_lowercase(), head.port, &head.path, &head.headers, head.content_length),
            "the upstream reads another request than the proxy checked"
        );
        assert!(again.proxy_authorization.is_none() && !again.expect_continue);
        // One framing: at most one Content-Length, never Transfer-Encoding,
        // and one Connection: close; nothing hop-by-hop survives.
        let text = String::from_utf8(out).expect("the upstream head is UTF-8");
        let names: Vec<String> = text.split("\r\n").skip(1).filter_map(|l| l.split_once(':')).map(|(k, _)| k.to_ascii_lowercase()).collect();
        let count = |n: &str| names.iter().filter(|k| *k == n).count();
        assert!(count("content-length") <= 1 && count("transfer-encoding") == 0 && count("host") == 1 && count("connection") == 1);
        assert!(names.iter().all(|k| k == "connection" || !HOP_BY_HOP.contains(&k.as_str())));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RequestHead, HeadError> {
        parse_request_head(s.as_bytes())
    }

    #[test]
    fn request_heads_parse_to_their_destination() {
        let h = parse("CONNECT api.stripe.com:443 HTTP/1.1\r\nHost: api.stripe.com:443\r\nProxy-Authorization: Bearer t\r\n\r\n").unwrap();
        assert_eq!((h.form, h.host.as_str(), h.port, h.path), (Form::Connect, "api.stripe.com", 443, None));
        assert_eq!(h.proxy_authorization.as_deref(), Some("Bearer t"));
        let h = parse("GET http://docs.example.com/v1/a?b HTTP/1.1\r\nX-Trace: 1\r\n\r\n").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.path.as_deref()), ("docs.example.com", 80, Some("/v1/a?b")));
        let h = parse("GET http://[::1]:8080 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.path.as_deref(), h.host_header().as_str()), ("::1", 8080, Some("/"), "[::1]:8080"));
        assert_eq!(parse("GET http://x.test?q=1 HTTP/1.1\r\n\r\n").unwrap().path.as_deref(), Some("/?q=1"));
    }

    #[test]
    fn malformed_targets_and_request_lines_are_refused() {
        for bad in [
            "GET https://x/ HTTP/1.1\r\n\r\n",
            "CONNECT x HTTP/1.1\r\n\r\n",
            "GET http://user@evil/ HTTP/1.1\r\n\r\n",
            "GET http://ev%69l/ HTTP/1.1\r\n\r\n",
            "GET http://x:0/ HTTP/1.1\r\n\r\n",
            "GET http://x:99999/ HTTP/1.1\r\n\r\n",
            "GET http://x/#frag HTTP/1.1\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\nGET http://y/ HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn smuggling_variants_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("bare LF in a value", "GET http://x/v1/ HTTP/1.1\r\nX-A: a\nContent-Length: 30\r\n\r\n"),
            ("bare LF line end", "GET http://x/v1/ HTTP/1.1\nHost: x\r\n\r\n"),
            ("bare CR", "GET http://x/v1/ HTTP/1.1\r\nX-A: a\rContent-Length: 3\r\n\r\n"),
            ("obs-fold", "GET http://x/v1/ HTTP/1.1\r\nX-A: a\r\n Content-Length: 3\r\n\r\n"),
            ("NUL", "GET http://x/v1/ HTTP/1.1\r\nX-A: a\0b\r\n\r\n"),
            ("DEL", "GET http://x/v1/ HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n"),
            ("space before colon", "GET http://x/v1/ HTTP/1.1\r\nContent-Length : 3\r\n\r\n"),
            ("duplicate CL", "POST http://x/v1/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            ("conflicting CL", "POST http://x/v1/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n"),
            ("CL list", "POST http://x/v1/ HTTP/1.1\r\nContent-Length: 3, 40\r\n\r\n"),
            ("signed CL", "POST http://x/v1/ HTTP/1.1\r\nContent-Length: +3\r\n\r\n"),
            ("CL and TE", "POST http://x/v1/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("TE", "POST http://x/v1/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("TE oddly cased", "POST http://x/v1/ HTTP/1.1\r\ntRANSFER-eNCODING: identity\r\n\r\n"),
            ("two Hosts", "GET http://x/v1/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
            ("Host mismatch", "GET http://x/v1/ HTTP/1.1\r\nHost: admin.internal\r\n\r\n"),
            ("Host port mismatch", "GET http://x/v1/ HTTP/1.1\r\nHost: x:8080\r\n\r\n"),
            ("CONNECT Host mismatch", "CONNECT x:443 HTTP/1.1\r\nHost: y:443\r\n\r\n"),
            ("CONNECT with a body", "CONNECT x:443 HTTP/1.1\r\nContent-Length: 4\r\n\r\n"),
            ("two proxy credentials", "GET http://x/ HTTP/1.1\r\nProxy-Authorization: Bearer a\r\nProxy-Authorization: Bearer b\r\n\r\n"),
            ("odd expectation", "POST http://x/ HTTP/1.1\r\nExpect: 200-ok\r\n\r\n"),
        ];
        for (what, head) in cases {
            assert!(parse(head).is_err(), "{what}: {head:?}");
        }
        assert_eq!(parse(cases[0].1).unwrap_err(), HeadError::BareLineBreak);
    }

    #[test]
    fn a_head_is_refused_when_its_rebuilt_form_would_not_fit() {
        let head = |n: usize| format!("GET http://x/ HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(n));
        let fits = MAX_HEADERS - 3;
        assert!(parse(&head(fits)).is_ok());
        assert_eq!(parse(&head(fits + 1)).unwrap_err(), HeadError::TooManyHeaders);
        fuzz::exercise(head(fits).as_bytes());
    }

    #[test]
    fn the_upstream_gets_a_rebuilt_head_without_hop_by_hop_headers() {
        let h = parse(
            "POST http://X.test:8080/v1/e?q HTTP/1.1\r\nHost: x.test:8080\r\nProxy-Authorization: Basic YTpi\r\nProxy-Connection: keep-alive\r\n\
             Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\nTE: trailers\r\nExpect: 100-continue\r\n\
             Accept: */*\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert!(h.expect_continue);
        assert_eq!(
            String::from_utf8(h.to_upstream()).unwrap(),
            "POST /v1/e?q HTTP/1.1\r\nHost: X.test:8080\r\nAccept: */*\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        fuzz::exercise(b"GET http://x/ HTTP/1.1\r\nA: b\r\n\r\n");
    }
}
