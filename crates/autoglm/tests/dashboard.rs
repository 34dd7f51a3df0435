//! `/dashboard` in a real headless Chromium (Debian's package) while a short load runs:
//! every chart has data, the page met no error, and a screenshot is written to
//! target/dashboard/dashboard.png (the README's picture comes from it). The page and its
//! data follow the API's key rules.

mod common;

use common::Server;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium (Debian's package; scripts/test.sh installs it)")
}

fn headless(url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("autoglm-chromium-{}", std::process::id()));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1400,1100",
            // Virtual time runs the page's 1 s refreshes without waiting them out; network
            // fetches hold it, so each refresh sees the server.
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn attr(dom: &str, id: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let v = tag.split(&format!("{name}=\"")).nth(1)?;
    Some(v[..v.find('"')?].to_string())
}

#[test]
fn the_dashboard_draws_live_data_in_a_real_browser() {
    let s = Server::start(&["--api-key", "sk-dash", "--served-model-name", "smol"]);
    // The page and its data need the key like the API.
    assert_eq!(s.request("GET", "/dashboard", &[], b"").status, 401);
    assert_eq!(s.request("GET", "/dashboard/data", &[], b"").status, 401);
    assert_eq!(
        s.request("GET", "/dashboard?api_key=sk-dash", &[], b"")
            .status,
        200
    );
    assert_eq!(
        s.request("GET", "/dashboard?api_key=wrong", &[], b"")
            .status,
        401
    );
    // A short load, one error among it, while the sampler records.
    let auth = ("Authorization", "Bearer sk-dash");
    let load = Instant::now();
    std::thread::scope(|sc| {
        for i in 0..2 {
            let s = &s;
            sc.spawn(move || {
                while load.elapsed() < Duration::from_secs(5) {
                    let body = json!({"prompt": format!("Load {i}:"), "max_tokens": 6, "ignore_eos": true})
                        .to_string();
                    let r = s.request("POST", "/v1/completions", &[auth], body.as_bytes());
                    assert_eq!(r.status, 200);
                }
            });
        }
        let r = s.request("POST", "/v1/completions", &[auth], b"{\"prompt\": 7}");
        assert_eq!(r.status, 400);
    });
    let data = s.request("GET", "/dashboard/data", &[auth], b"").json();
    let points = data["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{data}");
    assert!(points
        .iter()
        .any(|p| p["generation_tokens_per_s"].as_f64() > Some(0.0)));
    assert!(points.iter().any(|p| p["ttft_p99"].is_number()));
    assert_eq!(data["errors"][0]["status"], 400);

    let url = format!("http://127.0.0.1:{}/dashboard?api_key=sk-dash", s.port);
    let dom = headless(&url, &["--dump-dom"]);
    assert_eq!(
        attr(&dom, "status", "data-errors").as_deref(),
        Some("0"),
        "{dom}"
    );
    let updates: u32 = attr(&dom, "status", "data-updates")
        .unwrap()
        .parse()
        .unwrap();
    assert!(updates >= 1, "the page fetched its data");
    for chart in [
        "throughput",
        "tokens",
        "ttft",
        "itl",
        "queue",
        "kv",
        "cache",
    ] {
        let n: u32 = attr(&dom, chart, "data-points")
            .unwrap_or_else(|| panic!("chart {chart} missing"))
            .parse()
            .unwrap();
        // The cache chart has data only when a cache was asked; the prefix cache always is.
        assert!(n > 0, "chart {chart} drew nothing");
    }
    assert!(dom.contains("smol"));
    assert!(dom.contains("<td>400</td>"), "the recent error is listed");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    headless(&url, &[&format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
}
