//! Which requests the response cache may answer, and under which key.
//!
//! Cacheable: output determined by input — greedy (temperature 0) or sampled with a
//! `seed` — or a request that opts in with `"cache": true`. The key covers every field
//! that can change the output (the model id and the model file's digest, the engine's
//! fidelity settings, the endpoint, the prompt or messages, sampling, stop, max tokens,
//! n, logprobs, the caller's scope and `cache_salt`) and nothing that cannot (`stream`,
//! `stream_options`, `user`, `priority`, request ids, field order, whitespace).

use crate::service::{GenerationInput, PromptSource};
use crate::state::AppState;
use api::SamplingFields;
use axum::http::{header, HeaderMap};
use cache::{Key, Lane};
use serde::Serialize;
use std::time::Duration;

/// Whose entries a request may see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheScope {
    /// Per API key (a hash of it is in the key): one tenant cannot learn from timing
    /// what another asked.
    #[default]
    Key,
    Global,
}

impl std::str::FromStr for CacheScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "key" => Ok(Self::Key),
            "global" => Ok(Self::Global),
            _ => Err(format!("{s:?}: key or global")),
        }
    }
}

/// The request's `Cache-Control` directives (unknown ones are ignored, as HTTP caches do).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Skip the lookup, generate afresh, refresh the entry.
    pub no_cache: bool,
    /// Neither read nor write.
    pub no_store: bool,
    /// Accept only an entry at most this old.
    pub max_age: Option<Duration>,
}

impl Control {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let mut c = Control::default();
        for v in h.get_all(header::CACHE_CONTROL) {
            let Ok(v) = v.to_str() else { continue };
            for d in v.split(',').map(str::trim) {
                let (name, arg) = match d.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (d, None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-cache" => c.no_cache = true,
                    "no-store" => c.no_store = true,
                    "max-age" => {
                        if let Some(s) = arg.and_then(|a| a.parse::<u64>().ok()) {
                            // Several max-age directives: the strictest wins.
                            let a = Duration::from_secs(s);
                            c.max_age = Some(c.max_age.map_or(a, |m| m.min(a)));
                        }
                    }
                    _ => {}
                }
            }
        }
        c
    }
}

/// Everything that can change a response, in a fixed order.
#[derive(Serialize)]
struct Material<'a> {
    model_id: &'a str,
    /// The model file's digest and the fidelity-relevant engine settings.
    fingerprint: &'a str,
    endpoint: &'a str,
    /// Hex SHA-256 of the caller's API key; `None` under `--cache-scope global`.
    scope: Option<String>,
    salt: Option<&'a str>,
    /// The client's `Idempotency-Key`, for a sampled request's retries only.
    idempotency: Option<&'a str>,
    prompt: &'a PromptSource,
    sampling: SamplingFields,
    logprobs: Option<usize>,
}

pub enum Plan {
    Bypass,
    Cacheable {
        key: Key,
        control: Control,
        lane: Lane,
        /// How long a generation goes on with nobody listening, for a retry to attach:
        /// set when the request carries an `Idempotency-Key`.
        linger: Option<Duration>,
    },
}

/// A client's `Idempotency-Key` (at most 256 bytes).
fn idempotency_key(h: &HeaderMap) -> Option<&str> {
    h.get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
}

/// Whether the request may touch the cache, and its key when it may.
pub fn plan(st: &AppState, headers: &HeaderMap, input: &GenerationInput) -> Plan {
    let Some(_) = &st.cache else {
        return Plan::Bypass;
    };
    let mut control = Control::from_headers(headers);
    let f = &input.fields;
    let deterministic = f.temperature == 0.0 || f.seed.is_some();
    let wanted = f.cache.unwrap_or(deterministic);
    let idem = idempotency_key(headers);
    // A request the cache may not keep is still safe to retry with an Idempotency-Key:
    // its answer is kept apart, for the retries of that key only.
    let lane = if wanted && !control.no_store {
        Lane::Shared
    } else if idem.is_some() && f.cache != Some(false) {
        control = Control::default();
        Lane::Idempotent
    } else {
        return Plan::Bypass;
    };
    let Some(loaded) = st.loaded() else {
        return Plan::Bypass;
    };
    let scope = match (lane, st.config.cache_scope) {
        (Lane::Shared, CacheScope::Global) => None,
        _ => Some(caller_digest(headers)),
    };
    // The fields that cannot change the output are reset, so they never reach the key.
    let sampling = SamplingFields {
        model: String::new(),
        stream: false,
        stream_options: Default::default(),
        user: None,
        priority: 0,
        cache: None,
        cache_salt: None,
        ..f.clone()
    };
    let key = Key::of(&Material {
        model_id: &st.config.model_id,
        fingerprint: &loaded.fingerprint,
        endpoint: input.endpoint,
        scope,
        salt: f.cache_salt.as_deref(),
        idempotency: idem.filter(|_| lane == Lane::Idempotent),
        prompt: &input.source,
        sampling,
        logprobs: input.logprobs,
    });
    Plan::Cacheable {
        key,
        control,
        lane,
        linger: idem.map(|_| st.config.idempotency_linger),
    }
}

/// Hex SHA-256 of the bearer token (of the empty string without one): whether or not
/// keys are enforced, callers with different tokens never share entries.
fn caller_digest(h: &HeaderMap) -> String {
    let token = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::middleware::bearer)
        .unwrap_or("");
    crate::middleware::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, v.parse().unwrap());
        h
    }

    #[test]
    fn cache_control_directives_parse_as_http_says() {
        assert_eq!(Control::from_headers(&HeaderMap::new()), Control::default());
        let c = Control::from_headers(&headers("No-Cache, max-age=30, private"));
        assert!(c.no_cache && !c.no_store);
        assert_eq!(c.max_age, Some(Duration::from_secs(30)));
        assert!(Control::from_headers(&headers("no-store")).no_store);
        assert_eq!(
            Control::from_headers(&headers("max-age=\"5\", max-age=60")).max_age,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            Control::from_headers(&headers("max-age=soon")).max_age,
            None
        );
    }
}
