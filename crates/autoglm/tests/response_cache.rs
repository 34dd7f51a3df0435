//! The response cache through the real server, with a real redis-server: hits are the
//! misses that stored them, byte for byte; what is cacheable; Cache-Control; TTL;
//! scopes; replicas sharing Redis (write-through and cache-aside); coalescing of
//! identical requests; Redis outages and garbage in Redis.

mod common;

use common::redis::{Redis, Reply};
use common::{Response, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn post(s: &Server, path: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
    let r = s.request("POST", path, headers, body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn x_cache(r: &Response) -> &str {
    r.headers.get("x-cache").map(String::as_str).unwrap_or("")
}

/// A response with what legitimately differs between a live answer and its replay
/// (ids, timestamps, cached-token counts) taken out.
fn comparable(mut v: Value) -> Value {
    for k in ["id", "created"] {
        v.as_object_mut().unwrap().remove(k);
    }
    if let Some(u) = v.get_mut("usage").and_then(Value::as_object_mut) {
        u.remove("prompt_tokens_details");
    }
    v
}

/// A stream's chunks, per choice in order (how choices interleave depends on timing,
/// in a live stream as in the one that was stored), then the chunks of no choice.
fn stream_chunks(r: &Response) -> Vec<Vec<Value>> {
    let mut per: Vec<Vec<Value>> = vec![Vec::new()];
    for d in r.sse() {
        if d == "[DONE]" {
            per[0].push(json!("[DONE]"));
            continue;
        }
        let v = comparable(serde_json::from_str(&d).unwrap());
        let slot = match v["choices"][0]["index"].as_u64() {
            Some(i) => i as usize + 1,
            None => 0,
        };
        if per.len() <= slot {
            per.resize(slot + 1, Vec::new());
        }
        per[slot].push(v);
    }
    per
}

fn chat(prompt: &str, extra: Value) -> Value {
    let mut b = json!({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 12,
        "temperature": 0,
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn a_hit_replays_the_miss_that_stored_it_byte_for_byte() {
    let redis = Redis::start();
    let s = Server::start(&["--cache-redis", &redis.url()]);
    let path = "/v1/chat/completions";
    // Sampled with a seed, two choices, log-probabilities.
    let body = chat(
        "Name three colors.",
        json!({"n": 2, "seed": 7, "temperature": 0.9, "logprobs": true, "top_logprobs": 3}),
    );
    let miss = post(&s, path, &body, &[]);
    assert_eq!(x_cache(&miss), "miss");
    let hit = post(&s, path, &body, &[]);
    assert_eq!(x_cache(&hit), "hit-l1");
    let (m, h) = (miss.json(), hit.json());
    assert_eq!(comparable(m.clone()), comparable(h.clone()));
    assert_eq!(
        h["usage"]["prompt_tokens_details"]["cached_tokens"],
        h["usage"]["prompt_tokens"]
    );
    assert_ne!(m["choices"][0]["logprobs"], Value::Null);

    // `stream` is not in the key: the streaming request hits the same entry, and its
    // chunks are those of a live stream (asked for with no-cache, which generates afresh).
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let replay = post(&s, path, &sbody, &[]);
    assert_eq!(x_cache(&replay), "hit-l1");
    let live = post(&s, path, &sbody, &[("Cache-Control", "no-cache")]);
    assert_eq!(x_cache(&live), "miss");
    let (rc, lc) = (stream_chunks(&replay), stream_chunks(&live));
    assert_eq!(rc.len(), 3, "usage and [DONE], then two choices");
    assert!(rc[1].len() > 4 && rc[2].len() > 4);
    assert!(
        rc == lc,
        "a replay differs from a live stream:\n{rc:?}\n{lc:?}"
    );
    assert_eq!(rc[0].last().unwrap(), &json!("[DONE]"));
    let usage =
        &serde_json::from_str::<Value>(&replay.sse()[replay.sse().len() - 2]).unwrap()["usage"];
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        usage["prompt_tokens"]
    );

    // Legacy completions with logprobs, greedy.
    let cbody = json!({"prompt": "The capital of France is", "max_tokens": 10, "temperature": 0, "logprobs": 2});
    let cm = post(&s, "/v1/completions", &cbody, &[]);
    let ch = post(&s, "/v1/completions", &cbody, &[]);
    assert_eq!((x_cache(&cm), x_cache(&ch)), ("miss", "hit-l1"));
    assert_eq!(comparable(cm.json()), comparable(ch.json()));
    assert!(s.metric("autoglm_response_cache_hits_total") >= 3.0);
}

#[test]
fn only_deterministic_requests_are_cached_and_the_key_ignores_what_cannot_change_output() {
    let s = Server::start(&[]);
    let path = "/v1/chat/completions";
    let sampled = chat("Tell me a word.", json!({"temperature": 0.8}));
    assert_eq!(x_cache(&post(&s, path, &sampled, &[])), "bypass");
    assert_eq!(x_cache(&post(&s, path, &sampled, &[])), "bypass");
    // Opting in caches even a sampled request.
    let mut opted = sampled.clone();
    opted["cache"] = json!(true);
    let first = post(&s, path, &opted, &[]);
    let again = post(&s, path, &opted, &[]);
    assert_eq!((x_cache(&first), x_cache(&again)), ("miss", "hit-l1"));
    assert_eq!(comparable(first.json()), comparable(again.json()));
    // Opting out of a greedy one.
    let mut out = chat("Tell me a word.", json!({}));
    out["cache"] = json!(false);
    assert_eq!(x_cache(&post(&s, path, &out, &[])), "bypass");

    let greedy = chat("Tell me a word.", json!({}));
    assert_eq!(x_cache(&post(&s, path, &greedy, &[])), "miss");
    // Field order, whitespace, user, priority: the same entry.
    let reordered = r#"{ "temperature" : 0 ,
 "user": "u-42", "priority": 3, "max_tokens": 12, "messages": [{"content": "Tell me a word.", "role": "user"}] }"#;
    let r = s.request("POST", path, &[], reordered.as_bytes());
    assert_eq!((r.status, x_cache(&r)), (200, "hit-l1"), "{}", r.text());
    // Anything that can change the output: a different entry.
    for changed in [
        chat("Tell me a word.", json!({"max_tokens": 11})),
        chat("Tell me a word.", json!({"stop": ["."]})),
        chat("Tell me a word.", json!({"logprobs": true})),
        chat("Tell me a word!", json!({})),
        chat("Tell me a word.", json!({"cache_salt": "tenant-7"})),
    ] {
        assert_eq!(x_cache(&post(&s, path, &changed, &[])), "miss", "{changed}");
    }
    assert_eq!(
        x_cache(&post(
            &s,
            path,
            &chat("Tell me a word.", json!({"cache_salt": "tenant-7"})),
            &[]
        )),
        "hit-l1"
    );
    // The same words as a completion are a different endpoint.
    let c = json!({"prompt": "Tell me a word.", "max_tokens": 12, "temperature": 0});
    assert_eq!(x_cache(&post(&s, "/v1/completions", &c, &[])), "miss");
    let bad = s.post_json(path, &chat("x", json!({"cache": "yes"})));
    assert_eq!(bad.status, 400, "{}", bad.text());
}

#[test]
fn cache_control_directives_and_the_ttl_do_what_they_say() {
    let s = Server::start(&["--cache-ttl", "3s"]);
    let path = "/v1/chat/completions";
    let a = chat("Count to three.", json!({}));
    // no-store: neither read nor written.
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "no-store")])),
        "bypass"
    );
    assert_eq!(x_cache(&post(&s, path, &a, &[])), "miss");
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "no-store")])),
        "bypass"
    );
    assert_eq!(x_cache(&post(&s, path, &a, &[])), "hit-l1");
    std::thread::sleep(Duration::from_millis(1200));
    // max-age: an entry older than that is not good enough (the answer refreshes it).
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "max-age=1")])),
        "miss"
    );
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "max-age=1")])),
        "hit-l1"
    );
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "max-age=60")])),
        "hit-l1"
    );
    // no-cache: skip the lookup, generate, refresh the entry.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "no-cache")])),
        "miss"
    );
    assert_eq!(
        x_cache(&post(&s, path, &a, &[("Cache-Control", "max-age=1")])),
        "hit-l1"
    );
    // TTL: gone 3 s after it was generated.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(x_cache(&post(&s, path, &a, &[])), "miss");
}

#[test]
fn entries_are_per_api_key_unless_the_scope_is_global() {
    let keyed = Server::start(&["--api-key", "key-a", "--api-key", "key-b"]);
    let global = Server::start(&[
        "--api-key",
        "key-a",
        "--api-key",
        "key-b",
        "--cache-scope",
        "global",
    ]);
    let path = "/v1/chat/completions";
    let body = chat("Say yes.", json!({}));
    let (a, b) = (
        ("Authorization", "Bearer key-a"),
        ("Authorization", "Bearer key-b"),
    );
    assert_eq!(x_cache(&post(&keyed, path, &body, &[a])), "miss");
    assert_eq!(x_cache(&post(&keyed, path, &body, &[b])), "miss");
    assert_eq!(x_cache(&post(&keyed, path, &body, &[a])), "hit-l1");
    assert_eq!(x_cache(&post(&keyed, path, &body, &[b])), "hit-l1");
    assert_eq!(x_cache(&post(&global, path, &body, &[a])), "miss");
    assert_eq!(x_cache(&post(&global, path, &body, &[b])), "hit-l1");
}

#[test]
fn replicas_sharing_redis_see_entries_at_once_with_write_through_and_eventually_aside() {
    let redis = Redis::start();
    let through = Server::start(&["--cache-redis", &redis.url(), "--cache-write", "through"]);
    let aside = Server::start(&["--cache-redis", &redis.url(), "--cache-write", "aside"]);
    let path = "/v1/chat/completions";
    let p1 = chat("What is two plus two?", json!({}));
    let first = post(&through, path, &p1, &[]);
    assert_eq!(x_cache(&first), "miss");
    // The very next request, on the other replica: already in Redis.
    let second = post(&aside, path, &p1, &[]);
    assert_eq!(x_cache(&second), "hit-l2");
    assert_eq!(comparable(first.json()), comparable(second.json()));
    // Promoted into the second replica's L1.
    assert_eq!(x_cache(&post(&aside, path, &p1, &[])), "hit-l1");

    let p2 = chat("What is three plus three?", json!({}));
    assert_eq!(x_cache(&post(&aside, path, &p2, &[])), "miss");
    let t = Instant::now();
    while redis.keys("autoglm:rc:*").len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the aside store never reached Redis"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(x_cache(&post(&through, path, &p2, &[])), "hit-l2");
    // Entries carry the TTL in Redis.
    let key = redis.keys("autoglm:rc:*").pop().unwrap();
    match redis.cmd(&[b"PTTL", &key]) {
        Reply::Int(ms) => assert!(ms > 3_500_000 && ms <= 3_600_000, "{ms}"),
        r => panic!("{r:?}"),
    }
}

fn read_sse_until_done(r: &mut std::io::BufReader<std::net::TcpStream>) -> Vec<String> {
    use std::io::BufRead;
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            out.push(d.to_string());
            if d == "[DONE]" {
                break;
            }
        }
    }
    out
}

fn content_of(chunks: &[String]) -> String {
    chunks
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            let v: Value = serde_json::from_str(d).ok()?;
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn identical_requests_in_flight_run_the_model_once() {
    let s = Server::start(&[]);
    let path = "/v1/chat/completions";
    let finished = |s: &Server| s.metric("autoglm_requests_finished_total");
    let generated = |s: &Server| s.metric("autoglm_generation_tokens_total");

    // 16 at once, half streaming: one generation.
    let body = chat(
        "Write a line about the sea.",
        json!({"max_tokens": 48, "ignore_eos": true}),
    );
    let before = finished(&s);
    let answers: Vec<(String, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let (s, body) = (&s, body.clone());
                sc.spawn(move || {
                    let mut b = body;
                    b["stream"] = json!(i % 2 == 1);
                    let r = post(s, path, &b, &[]);
                    let text = if i % 2 == 1 {
                        content_of(&r.sse())
                    } else {
                        r.json()["choices"][0]["message"]["content"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    };
                    (x_cache(&r).to_string(), text)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let misses = answers.iter().filter(|a| a.0 == "miss").count();
    let shared = answers
        .iter()
        .filter(|a| a.0 == "coalesced" || a.0 == "hit-l1")
        .count();
    assert_eq!((misses, shared), (1, 15), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| a.1 == answers[0].1 && !a.1.is_empty()),
        "{answers:?}"
    );
    let t = Instant::now();
    while finished(&s) < before + 1.0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(finished(&s) - before, 1.0);

    // The first client leaves early; its followers still get the whole answer.
    let body = chat(
        "Describe a mountain.",
        json!({"max_tokens": 40, "ignore_eos": true, "stream": true}),
    );
    let (fin0, gen0) = (finished(&s), generated(&s));
    let mut leader = s.open_stream(path, &body);
    let mut first = String::new();
    while !first.starts_with("data: ") {
        first.clear();
        std::io::BufRead::read_line(&mut leader, &mut first).unwrap();
    }
    let mut followers: Vec<_> = (0..3).map(|_| s.open_stream(path, &body)).collect();
    drop(leader);
    let texts: Vec<String> = followers
        .iter_mut()
        .map(|f| content_of(&read_sse_until_done(f)))
        .collect();
    assert!(
        texts.iter().all(|t| t == &texts[0] && !t.is_empty()),
        "{texts:?}"
    );
    let t = Instant::now();
    while finished(&s) < fin0 + 1.0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(finished(&s) - fin0, 1.0);
    assert_eq!(generated(&s) - gen0, 40.0);
    // The whole answer was stored, though its first client left.
    let again = post(&s, path, &body, &[]);
    assert_eq!(x_cache(&again), "hit-l1");
    assert_eq!(content_of(&again.sse()), texts[0]);

    // When nobody listens any more, the generation is cancelled.
    let long = chat(
        "Tell a long story.",
        json!({"max_tokens": 2000, "ignore_eos": true, "stream": true}),
    );
    let gen1 = generated(&s);
    let mut only = s.open_stream(path, &long);
    let mut l = String::new();
    while !l.starts_with("data: ") {
        l.clear();
        std::io::BufRead::read_line(&mut only, &mut l).unwrap();
    }
    drop(only);
    let idle = |metric: &str, within: u64, what: &str| {
        let t = Instant::now();
        while s.metric(metric) > 0.0 {
            assert!(t.elapsed() < Duration::from_secs(within), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    idle(
        "autoglm_num_requests_running",
        10,
        "the abandoned generation kept running",
    );
    assert!(generated(&s) - gen1 < 2000.0);
    // Its blocks are freed: the gauge reaches 0 (a leak would keep it above).
    idle(
        "autoglm_kv_cache_blocks_used",
        5,
        "the abandoned generation's KV blocks were not freed",
    );
}

#[test]
fn a_redis_outage_fails_no_request_and_hits_resume_when_it_returns() {
    let mut redis = Redis::start();
    // No L1: every hit must come from Redis.
    let s = Server::start(&[
        "--cache-redis",
        &redis.url(),
        "--cache-l1-bytes",
        "0",
        "--cache-write",
        "through",
    ]);
    let path = "/v1/chat/completions";
    let p = chat("Name a fruit.", json!({}));
    assert_eq!(x_cache(&post(&s, path, &p, &[])), "miss");
    assert_eq!(x_cache(&post(&s, path, &p, &[])), "hit-l2");
    assert_eq!(s.metric("autoglm_response_cache_l2_healthy"), 1.0);

    redis.kill();
    for i in 0..6 {
        let q = chat(&format!("Name a fruit, take {i}."), json!({}));
        let r = post(&s, path, &q, &[]);
        assert_eq!(x_cache(&r), "miss");
        let again = post(&s, path, &p, &[]);
        assert_eq!(x_cache(&again), "miss");
    }
    assert_eq!(s.metric("autoglm_response_cache_l2_healthy"), 0.0);
    assert!(s.metric("autoglm_response_cache_l2_errors_total") >= 1.0);
    let warned = s.log().matches("the Redis L2 is unavailable").count();
    assert_eq!(warned, 1, "one log line per outage, not per request");

    redis.restart();
    let q = chat("Name a vegetable.", json!({}));
    let t = Instant::now();
    loop {
        let r = post(&s, path, &q, &[]);
        if x_cache(&r) == "hit-l2" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "L2 hits never resumed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.metric("autoglm_response_cache_l2_healthy"), 1.0);
    assert_eq!(s.log().matches("the Redis L2 answers again").count(), 1);
}

#[test]
fn garbage_or_a_truncated_value_in_redis_is_a_miss() {
    let redis = Redis::start();
    let s = Server::start(&[
        "--cache-redis",
        &redis.url(),
        "--cache-l1-bytes",
        "0",
        "--cache-write",
        "through",
    ]);
    let path = "/v1/chat/completions";
    let p = chat("Name a river.", json!({}));
    let good = post(&s, path, &p, &[]);
    assert_eq!(x_cache(&good), "miss");
    let key = redis.keys("autoglm:rc:*").pop().expect("stored in Redis");
    let Reply::Bulk(Some(raw)) = redis.cmd(&[b"GET", &key]) else {
        panic!("GET")
    };
    for bad in [
        b"garbage".to_vec(),
        raw[..raw.len() - 10].to_vec(),
        Vec::new(),
    ] {
        assert_eq!(redis.cmd(&[b"SET", &key, &bad]), Reply::Simple("OK".into()));
        let r = post(&s, path, &p, &[]);
        assert_eq!(x_cache(&r), "miss");
        assert_eq!(comparable(r.json()), comparable(good.json()));
        // The miss stored a good entry again.
        assert_eq!(x_cache(&post(&s, path, &p, &[])), "hit-l2");
    }
    assert_eq!(s.metric("autoglm_response_cache_l2_corrupt_total"), 3.0);
}

#[test]
fn a_slow_redis_costs_a_request_at_most_the_timeout() {
    let redis = Redis::start();
    let s = Server::start(&[
        "--cache-redis",
        &redis.url(),
        "--cache-l1-bytes",
        "0",
        "--cache-redis-timeout-ms",
        "50",
    ]);
    let path = "/v1/chat/completions";
    let p = chat("Name a bird.", json!({"max_tokens": 4}));
    assert_eq!(x_cache(&post(&s, path, &p, &[])), "miss");
    assert_eq!(x_cache(&post(&s, path, &p, &[])), "hit-l2");
    // Redis stops answering for 8 s; the requests meanwhile are misses answered by the
    // model, each delayed by no more than the timeout (and a probe per 250 ms after the
    // first failure), never by the sleep: all three finish while Redis still sleeps.
    // (Not a wall-clock bound on the three: on a loaded 2-core CI machine the model's
    // own time for them varies by seconds.)
    let port = redis.port;
    let sleeper = std::thread::spawn(move || {
        let r = Redis::attach(port);
        let t = Instant::now();
        let reply = r.cmd(&[b"DEBUG", b"SLEEP", b"8"]);
        (reply, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let r = post(&s, path, &p, &[]);
        assert_eq!(x_cache(&r), "miss");
    }
    assert!(
        !sleeper.is_finished(),
        "the requests waited for Redis to wake up"
    );
    assert!(s.metric("autoglm_response_cache_l2_errors_total") >= 1.0);
    let (reply, slept) = sleeper.join().unwrap();
    assert_eq!(reply, Reply::Simple("OK".into()));
    assert!(slept >= Duration::from_secs(8), "{slept:?}");
}
