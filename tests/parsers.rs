//! Property tests of every parser that reads client input: random and adversarial inputs,
//! a fixed seed per run of the test command (set `LARDER_PROPTEST_SEED` to explore), a
//! bounded number of cases. No parser may panic, recurse without bound, or disagree with
//! itself (canonical forms are fixed points).

use http::{HeaderMap, HeaderName, HeaderValue};
use larder::key::json::{canonicalize, Canonical, MAX_DEPTH};
use larder::key::{normalize_percent, vary_value, Users};
use larder::policy::{parse_date, Directives};
use larder::semantics::hygiene::remove_dot_segments;

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let seed = std::env::var("LARDER_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_1a7d_e700_0001u64);
        Rng((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| *self.pick(alphabet)).collect()
    }
}

const CASES: usize = 3_000;

/// A random JSON value as (a serde_json value, one random spelling of it).
fn json_value(rng: &mut Rng, depth: usize) -> (serde_json::Value, String) {
    let ws = |rng: &mut Rng| [" ", "", "\n", "\t", "  "][rng.below(5)].to_string();
    let kind = if depth == 0 {
        rng.below(4)
    } else {
        rng.below(6)
    };
    match kind {
        0 => {
            let n = rng.next() as i64 % 100_000;
            (serde_json::json!(n), n.to_string())
        }
        1 => {
            let s: String = (0..rng.below(6))
                .map(|_| *rng.pick(&['a', 'é', '"', '\\', '\n', '😀', 'z', '\u{1}']))
                .collect();
            // Spell it escaped one way or another.
            let spelled = if rng.below(2) == 0 {
                serde_json::to_string(&s).expect("string")
            } else {
                let mut out = String::from("\"");
                for c in s.chars() {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                out.push('"');
                out
            };
            (serde_json::json!(s), spelled)
        }
        2 => (serde_json::json!(true), "true".into()),
        3 => (serde_json::Value::Null, "null".into()),
        4 => {
            let items: Vec<_> = (0..rng.below(4))
                .map(|_| json_value(rng, depth - 1))
                .collect();
            let text = items
                .iter()
                .map(|(_, t)| format!("{}{t}{}", ws(rng), ws(rng)))
                .collect::<Vec<_>>()
                .join(",");
            (
                serde_json::Value::Array(items.into_iter().map(|(v, _)| v).collect()),
                format!("[{text}]"),
            )
        }
        _ => {
            let mut map = serde_json::Map::new();
            let mut members = Vec::new();
            for i in 0..rng.below(4) {
                let key = format!("k{}", (i * 7 + rng.below(3)) % 10);
                if map.contains_key(&key) {
                    continue;
                }
                let (v, t) = json_value(rng, depth - 1);
                map.insert(key.clone(), v);
                members.push(format!("{}\"{key}\"{}:{}{t}", ws(rng), ws(rng), ws(rng)));
            }
            // Any member order spells the same object.
            for i in (1..members.len()).rev() {
                let j = rng.below(i + 1);
                members.swap(i, j);
            }
            (
                serde_json::Value::Object(map),
                format!("{{{}}}", members.join(",")),
            )
        }
    }
}

#[test]
fn canonical_json_is_a_fixed_point_that_keeps_the_value() {
    let mut rng = Rng::new(1);
    for _ in 0..CASES {
        let (value, a) = json_value(&mut rng, 5);
        let Canonical::Json(canon) = canonicalize(a.as_bytes()) else {
            panic!("valid JSON refused: {a}");
        };
        // Another spelling of the same value canonicalises the same.
        let b = serde_json::to_string_pretty(&value).expect("pretty");
        assert_eq!(
            canonicalize(b.as_bytes()),
            Canonical::Json(canon.clone()),
            "{a} / {b}"
        );
        assert_eq!(canonicalize(&canon), Canonical::Json(canon.clone()));
        let back: serde_json::Value = serde_json::from_slice(&canon).expect("canonical is JSON");
        assert_eq!(back, value, "{a}");
    }
}

#[test]
fn canonical_json_never_panics_on_mangled_input() {
    let mut rng = Rng::new(2);
    for _ in 0..CASES {
        let (_, text) = json_value(&mut rng, 4);
        let mut bytes = text.into_bytes();
        for _ in 0..rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = *rng.pick(b"[]{}\",:\\u0e-+. \xff"),
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, *rng.pick(b"[{\"\\")),
            }
        }
        let _ = canonicalize(&bytes);
    }
}

#[test]
fn canonical_json_depth_is_bounded_for_any_nesting() {
    let mut rng = Rng::new(3);
    for _ in 0..200 {
        let depth = rng.below(400_000) + 1;
        let open: Vec<u8> = (0..depth).map(|_| *rng.pick(b"[")).collect();
        let mut doc = open.clone();
        doc.extend(std::iter::repeat_n(b']', depth));
        let got = canonicalize(&doc);
        if depth <= MAX_DEPTH {
            assert!(matches!(got, Canonical::Json(_)), "{depth}");
        } else {
            assert_eq!(got, Canonical::TooDeep, "{depth}");
        }
    }
}

/// Whether every `%` in `s` starts a valid escape.
fn escapes_valid(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).all(|i| {
        b[i] != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

#[test]
fn percent_normalisation_is_idempotent_and_never_makes_an_escape() {
    let mut rng = Rng::new(4);
    for _ in 0..CASES {
        let raw = rng.bytes(b"%%%0123456789aAfFgG/._~-?=&", 24);
        let s = String::from_utf8(raw).expect("ascii");
        let once = normalize_percent(&s).into_owned();
        assert!(escapes_valid(&once), "{s:?} -> {once:?}");
        assert_eq!(normalize_percent(&once), once, "{s:?}");
    }
}

#[test]
fn dot_segment_removal_leaves_none_and_is_idempotent() {
    let mut rng = Rng::new(5);
    for _ in 0..CASES {
        let segments: Vec<&str> = (0..rng.below(8))
            .map(|_| *rng.pick(&[".", "..", "a", "b", "", "...", ".a"]))
            .collect();
        let path = format!("/{}", segments.join("/"));
        let out = remove_dot_segments(&path);
        assert!(out.starts_with('/'), "{path} -> {out}");
        assert!(
            out.split('/').all(|s| s != "." && s != ".."),
            "{path} -> {out}"
        );
        assert_eq!(remove_dot_segments(&out), out);
    }
}

fn header_value(rng: &mut Rng, alphabet: &[u8], max: usize) -> HeaderValue {
    let bytes: Vec<u8> = rng
        .bytes(alphabet, max)
        .into_iter()
        .filter(|b| *b != b'\r' && *b != b'\n' && *b != 0 && *b != 0x7f)
        .collect();
    HeaderValue::from_bytes(&bytes).expect("no CR, LF or NUL")
}

#[test]
fn header_parsers_never_panic() {
    let mut rng = Rng::new(6);
    let cc_alphabet = b"max-age=s-maxage,no-cache\"private; =0123456789,\xff\t ";
    let users = Users::new(
        vec![larder::config::UserSource::Cookie("session".into())],
        b"secret",
    );
    for _ in 0..CASES {
        let v = header_value(&mut rng, cc_alphabet, 40);
        let d = Directives::parse(std::iter::once(&v));
        if let Some(age) = d.max_age {
            assert!(age <= larder::policy::DELTA_MAX);
        }
        let _ = parse_date(&header_value(
            &mut rng,
            b"SunMonNov, 0123456789:GMT-\xff ",
            32,
        ));
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            header_value(&mut rng, b"session=; ab\xff\"", 30),
        );
        let _ = users.identify(&h);
        let name = HeaderName::from_static("accept-language");
        h.append(
            name.clone(),
            header_value(&mut rng, b"en,fr; q=0.5\xff", 30),
        );
        let _ = vary_value(&h, &name);
    }
}

#[test]
fn http_dates_round_trip() {
    let mut rng = Rng::new(7);
    for _ in 0..CASES {
        let secs = rng.next() % 4_000_000_000;
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let text = httpdate::fmt_http_date(t);
        let v = HeaderValue::from_str(&text).expect("date");
        assert_eq!(parse_date(&v), Some(secs), "{text}");
    }
}

#[test]
fn vary_values_ignore_list_whitespace_only_in_negotiation_headers() {
    let mut rng = Rng::new(8);
    let tenant = HeaderName::from_static("x-tenant");
    let language = HeaderName::from_static("accept-language");
    for _ in 0..CASES {
        let items: Vec<Vec<u8>> = (0..rng.below(4) + 1)
            .map(|_| rng.bytes(b"aAb\x80\xff", 4))
            .filter(|i| !i.is_empty())
            .collect();
        let tight = items.join(&b',');
        let loose = items.join(&b", "[..]);
        let mk = |name: &HeaderName, v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_bytes(v).expect("value"));
            vary_value(&h, name)
        };
        // Members of a negotiation list are compared without the space around them.
        assert_eq!(mk(&language, &tight), mk(&language, &loose));
        // Any other header is keyed by its bytes: an origin may read them as they are.
        assert_eq!(mk(&tenant, &tight) == mk(&tenant, &loose), tight == loose);
    }
}
