//! `/openapi.json` describes the API as implemented, and schemathesis, generating valid
//! and invalid requests from it, finds no server error and no response that breaks it.

mod common;

use common::Server;
use std::process::Command;

#[test]
fn schemathesis_finds_no_5xx_and_no_response_outside_the_document() {
    // A short context keeps each generated request cheap (max_tokens defaults to the rest
    // of the context).
    let s = Server::start(&["--ctx-size", "96"]);
    let doc = s.request("GET", "/openapi.json", &[], b"").json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for p in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/models/{id}",
        "/health",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from the document");
    }
    let schemas = &doc["components"]["schemas"];
    for t in [
        "ChatRequest",
        "CompletionRequest",
        "ChatCompletion",
        "Completion",
        "ErrorBody",
        "FinishReason",
    ] {
        assert!(schemas[t].is_object(), "schema {t} missing");
    }
    let report = std::env::temp_dir().join(format!("autoglm-schemathesis-{}.json", s.port));
    let out = Command::new("schemathesis")
        .args([
            "run",
            &format!("http://127.0.0.1:{}/openapi.json", s.port),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--seed",
            "20261201",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            report.to_str().unwrap(),
        ])
        .output()
        .expect("schemathesis (scripts/test.sh installs it in the test venv)");
    let so = String::from_utf8_lossy(&out.stdout);
    println!("{so}");
    assert!(
        out.status.success(),
        "schemathesis failed:\n{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!so.contains("FAILED"), "{so}");
}
