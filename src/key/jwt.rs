//! A verified JWT as a user source (`jwt:CLAIM`): the Bearer token's signature checked
//! (HS256 with a shared secret, RS256 or ES256 with a PEM public key), then `exp` (required)
//! and `nbf`, and the issuer and audience when configured. A token that does not verify is
//! no user. Verification is by the `jsonwebtoken` crate; tokens that verified are
//! remembered (bounded, until they expire) so a hit costs a hash and a lookup, not a
//! signature check.
//!
//! ```
//! use larder::key::jwt::{JwtKeys, JwtVerifier};
//! use jsonwebtoken::{encode, EncodingKey, Header};
//! let verifier = JwtVerifier::new(JwtKeys { secret: Some(b"s3cret".to_vec()), ..JwtKeys::default() }).unwrap();
//! let exp = jsonwebtoken::get_current_timestamp() + 60;
//! let claims = serde_json::json!({ "sub": "42", "exp": exp });
//! let good = encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret").unwrap()).unwrap();
//! assert_eq!(verifier.claim(&good, "sub").as_deref(), Some("42"));
//! let forged = encode(&Header::default(), &claims, &EncodingKey::from_secret(b"guess").unwrap()).unwrap();
//! assert_eq!(verifier.claim(&forged, "sub"), None);
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Map, Value};

/// How many verified tokens are remembered.
const REMEMBERED: usize = 10_000;

/// The keys and checks of a verifier.
#[derive(Clone, Default)]
pub struct JwtKeys {
    /// The HS256 key.
    pub secret: Option<Vec<u8>>,
    /// A PEM public key (RSA for RS256, P-256 for ES256).
    pub public_pem: Option<Vec<u8>>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Verifies Bearer tokens and reads their claims.
pub struct JwtVerifier {
    /// Each key with the one algorithm it verifies and the checks to apply.
    keys: Vec<(Algorithm, DecodingKey, Validation)>,
    leeway: u64,
    verified: Mutex<HashMap<[u8; 16], Verified>>,
}

struct Verified {
    claims: Arc<Map<String, Value>>,
    /// `exp` plus the leeway, in seconds since the epoch.
    until: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<Algorithm> = self.keys.iter().map(|(a, _, _)| *a).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algs)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier with these keys; an error names what is wrong with a key.
    pub fn new(k: JwtKeys) -> Result<JwtVerifier, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &k.secret {
            let key = DecodingKey::from_secret(secret).map_err(|e| e.to_string())?;
            keys.push((Algorithm::HS256, key));
        }
        if let Some(pem) = &k.public_pem {
            if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                keys.push((Algorithm::RS256, key));
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                keys.push((Algorithm::ES256, key));
            } else {
                return Err("not a PEM RSA or EC (P-256) public key".into());
            }
        }
        if keys.is_empty() {
            return Err("no key to verify tokens with".into());
        }
        let checks = |alg: Algorithm| {
            // One algorithm per key: a token's alg picks its key, and nothing else verifies.
            let mut v = Validation::new(alg);
            v.leeway = k.leeway.as_secs();
            v.validate_nbf = true;
            let mut required = vec!["exp"];
            if let Some(iss) = &k.issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            match &k.audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.push("aud");
                }
                None => v.validate_aud = false,
            }
            v.set_required_spec_claims(&required);
            v
        };
        Ok(JwtVerifier {
            keys: keys
                .into_iter()
                .map(|(alg, key)| (alg, key, checks(alg)))
                .collect(),
            leeway: k.leeway.as_secs(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The value of `claim` (a string, or a number as text) of `token` if it verifies.
    pub fn claim(&self, token: &str, claim: &str) -> Option<String> {
        let claims = self.verify(token)?;
        match claims.get(claim)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The claims of `token` if it verifies now.
    fn verify(&self, token: &str) -> Option<Arc<Map<String, Value>>> {
        let now = jsonwebtoken::get_current_timestamp();
        let mut id = [0u8; 16];
        id.copy_from_slice(&blake3::hash(token.as_bytes()).as_bytes()[..16]);
        if let Some(v) = self.verified.lock().get(&id) {
            if now <= v.until {
                return Some(v.claims.clone());
            }
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let (_, key, checks) = self.keys.iter().find(|(alg, _, _)| *alg == header.alg)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, checks).ok()?;
        let claims = Arc::new(data.claims);
        // `exp` is required and was checked as a number.
        let exp = claims.get("exp").and_then(Value::as_u64)?;
        let mut verified = self.verified.lock();
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(
            id,
            Verified {
                claims: claims.clone(),
                until: exp.saturating_add(self.leeway),
            },
        );
        Some(claims)
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn hs(claims: &Value) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(b"k").unwrap(),
        )
        .unwrap()
    }

    fn verifier(leeway: u64) -> JwtVerifier {
        JwtVerifier::new(JwtKeys {
            secret: Some(b"k".to_vec()),
            leeway: Duration::from_secs(leeway),
            ..JwtKeys::default()
        })
        .unwrap()
    }

    #[test]
    fn expiry_and_not_before_are_checked_even_when_remembered() {
        let now = jsonwebtoken::get_current_timestamp();
        let v = verifier(0);
        assert_eq!(
            v.claim(&hs(&json!({"sub": 7, "exp": now + 60})), "sub")
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            v.claim(&hs(&json!({"sub": "a", "exp": now - 5})), "sub"),
            None
        );
        assert_eq!(
            v.claim(&hs(&json!({"sub": "a"})), "sub"),
            None,
            "exp is required"
        );
        assert_eq!(
            v.claim(
                &hs(&json!({"sub": "a", "exp": now + 60, "nbf": now + 30})),
                "sub"
            ),
            None
        );
        // A claim of the wrong type is refused, not skipped.
        assert_eq!(
            v.claim(&hs(&json!({"sub": "a", "exp": "never"})), "sub"),
            None
        );
        assert_eq!(
            v.claim(
                &hs(&json!({"sub": "a", "exp": now + 60, "nbf": "later"})),
                "sub"
            ),
            None
        );
    }

    #[test]
    fn a_configured_issuer_and_audience_must_be_present() {
        let now = jsonwebtoken::get_current_timestamp();
        let v = JwtVerifier::new(JwtKeys {
            secret: Some(b"k".to_vec()),
            issuer: Some("idp".into()),
            audience: Some("larder".into()),
            ..JwtKeys::default()
        })
        .unwrap();
        let ok = json!({"sub": "a", "exp": now + 60, "iss": "idp", "aud": "larder"});
        assert_eq!(v.claim(&hs(&ok), "sub").as_deref(), Some("a"));
        for bad in [
            json!({"sub": "a", "exp": now + 60, "iss": "idp"}),
            json!({"sub": "a", "exp": now + 60, "aud": "larder"}),
            json!({"sub": "a", "exp": now + 60, "iss": "other", "aud": "larder"}),
        ] {
            assert_eq!(v.claim(&hs(&bad), "sub"), None, "{bad}");
        }
    }

    #[test]
    fn a_secret_and_a_public_key_both_verify_their_own_tokens() {
        let now = jsonwebtoken::get_current_timestamp();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let v = JwtVerifier::new(JwtKeys {
            secret: Some(b"k".to_vec()),
            public_pem: Some(pair.public_key_pem().into_bytes()),
            ..JwtKeys::default()
        })
        .unwrap();
        let claims = json!({"sub": "e", "exp": now + 60});
        let es = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(v.claim(&es, "sub").as_deref(), Some("e"));
        assert_eq!(v.claim(&hs(&claims), "sub").as_deref(), Some("e"));
    }

    #[test]
    fn the_algorithm_must_be_one_the_keys_allow() {
        let now = jsonwebtoken::get_current_timestamp();
        let v = verifier(0);
        let token = encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "a", "exp": now + 60}),
            &EncodingKey::from_secret(b"k").unwrap(),
        )
        .unwrap();
        assert_eq!(v.claim(&token, "sub"), None);
        assert_eq!(v.claim("not.a.token", "sub"), None);
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
    }
}
