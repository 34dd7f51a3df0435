//! The Rust client against a real `autoglm serve`: typed chat and completions, streaming
//! and not, models, a typed error, HTTP/1.1 and h2c.

mod common;

use autoglm_client::{Client, Error, RetryPolicy};
use common::Server;
use futures::StreamExt;
use serde_json::json;

fn chat(v: serde_json::Value) -> api::ChatRequest {
    api::ChatRequest::from_json(&v).unwrap()
}

#[test]
fn the_client_speaks_to_a_real_server_over_http1_and_h2c() {
    let s = Server::start(&["--api-key", "sk-c"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for h2 in [false, true] {
            let c = Client::builder(s.url())
                .api_key("sk-c")
                // The live path, not the response cache.
                .header("Cache-Control", "no-store")
                .retry(RetryPolicy::none())
                .http2_prior_knowledge(h2)
                .build()
                .unwrap();
            let models = c.models().await.unwrap();
            assert_eq!(models.data.len(), 1);
            let req = chat(json!({"messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 12, "temperature": 0}));
            let whole = c.chat(&req).await.unwrap();
            let text = &whole.choices[0].message.content;
            assert!(!text.is_empty());
            let mut st = c.chat_stream(&req).await.unwrap();
            let mut streamed = String::new();
            while let Some(ch) = st.next().await {
                let ch = ch.unwrap();
                if let Some(t) = ch.choices.first().and_then(|c| c.delta.content.clone()) {
                    streamed.push_str(&t);
                }
            }
            assert_eq!(&streamed, text, "h2c: {h2}");
            let creq = api::CompletionRequest::from_json(&json!({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0})).unwrap();
            let done = c.completions(&creq).await.unwrap();
            let mut st = c.completions_stream(&creq).await.unwrap();
            let mut ctext = String::new();
            while let Some(ch) = st.next().await {
                ctext.push_str(&ch.unwrap().choices.first().map(|c| c.text.clone()).unwrap_or_default());
            }
            assert_eq!(ctext, done.choices[0].text);
            // Sixteen concurrent streams (one connection with h2c).
            let runs = futures::future::join_all((0..16).map(|i| {
                let c = c.clone();
                async move {
                    let r = chat(json!({"messages": [{"role": "user", "content": format!("Count to {i}.")}], "max_tokens": 8, "temperature": 0}));
                    let mut st = c.chat_stream(&r).await?;
                    let mut n = 0;
                    while let Some(ch) = st.next().await {
                        ch?;
                        n += 1;
                    }
                    Ok::<_, Error>(n)
                }
            }))
            .await;
            assert!(runs.iter().all(|r| matches!(r, Ok(n) if *n > 0)), "{runs:?}");
            // A server error arrives typed, with the OpenAI body.
            let bad = chat(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1_000_000}));
            match c.chat(&bad).await {
                Err(Error::Status { status: 400, body: Some(b), .. }) => {
                    assert!(b.error.message.contains("context"), "{}", b.error.message)
                }
                r => panic!("{:?}", r.map(|_| ())),
            }
        }
        let wrong_key = Client::builder(s.url()).api_key("nope").build().unwrap();
        assert!(matches!(wrong_key.models().await, Err(Error::Status { status: 401, .. })));
    });
}
