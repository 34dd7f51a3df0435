//! Request batching: small `/v1/completions` requests gathered for a short window into one
//! call with an array prompt, each caller handed its own choices (and its own error).
//!
//! Requests share a call only when every field but the prompt is equal (and the prompts
//! are of one kind, text or token ids). A window closes when it holds `max_batch` prompts
//! or `max_wait` after its first request. When the server refuses the combined call with a
//! 4xx (one bad prompt fails a whole array), each request of it is sent again alone, so
//! the bad one gets its error and the others their answers. A seeded request is always
//! sent alone: servers (autoglm among them) derive each choice's seed from its index in
//! the call, so its samples would depend on its neighbours.
//!
//! The combined call reports usage for all of its prompts together; a caller's
//! [`api::Completion`] therefore carries `usage: None`, and its choices are re-indexed from
//! 0 as if it had been sent alone.
//!
//! ```no_run
//! # async fn demo() -> autoglm_client::Result<()> {
//! use autoglm_client::{batcher::{BatchConfig, Batcher}, Client};
//! let client = Client::builder("http://127.0.0.1:8000/v1").build()?;
//! let batcher = Batcher::new(client, BatchConfig::default());
//! let req = api::CompletionRequest::from_json(&serde_json::json!({
//!     "prompt": "Sentiment of 'great phone': ", "max_tokens": 1, "temperature": 0,
//! })).expect("a valid request");
//! let answer = batcher.completion(req).await?;
//! println!("{}", answer.choices[0].text);
//! # Ok(()) }
//! ```

use crate::{Client, Error, Result};
use api::{Completion, CompletionRequest, Prompt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Prompts per call at most; a full window is sent at once.
    pub max_batch: usize,
    /// How long the first request of a window waits for company.
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::from_millis(5),
        }
    }
}

struct Item {
    req: CompletionRequest,
    reply: oneshot::Sender<Result<Completion>>,
}

struct Window {
    items: Vec<Item>,
    prompts: usize,
    due: Instant,
}

/// What a batcher has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Requests handed to it.
    pub requests: u64,
    /// HTTP calls it made (combined calls, lone requests, and the re-sends after a
    /// refused combined call).
    pub calls: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    calls: AtomicU64,
}

/// Cloning shares the windows (and the client).
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Item>,
    counters: Arc<Counters>,
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime.
    pub fn new(client: Client, cfg: BatchConfig) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let sender = Sender {
            client,
            counters: counters.clone(),
        };
        tokio::spawn(gather(sender, cfg, rx));
        Batcher { tx, counters }
    }

    pub fn stats(&self) -> BatchStats {
        BatchStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            calls: self.counters.calls.load(Ordering::Relaxed),
        }
    }

    /// One completion (not streamed), answered from a combined call when others came
    /// within the window.
    pub async fn completion(&self, req: CompletionRequest) -> Result<Completion> {
        if req.fields.stream {
            return Err(Error::Config(
                "the batcher sends whole answers; stream with Client::completions_stream".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Item { req, reply })
            .map_err(|_| Error::Config("the batcher's task has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Config("the batcher dropped the request".into()))?
    }
}

fn prompt_count(p: &Prompt) -> usize {
    match p {
        Prompt::Text(t) => t.len(),
        Prompt::Tokens(t) => t.len(),
    }
}

/// Requests with equal keys may share a call: everything but the prompt's contents.
fn group_key(req: &CompletionRequest) -> Option<String> {
    if req.fields.seed.is_some() {
        return None;
    }
    let mut v = serde_json::to_value(req).ok()?;
    let kind = match req.prompt {
        Prompt::Text(_) => "text",
        Prompt::Tokens(_) => "tokens",
    };
    v["prompt"] = serde_json::Value::String(kind.into());
    Some(v.to_string())
}

async fn gather(client: Sender, cfg: BatchConfig, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut windows: HashMap<String, Window> = HashMap::new();
    loop {
        let next_due = windows.values().map(|w| w.due).min();
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = windows
                    .iter()
                    .filter(|(_, w)| w.due <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in due {
                    if let Some(w) = windows.remove(&k) {
                        tokio::spawn(send(client.clone(), w.items));
                    }
                }
                continue;
            }
        };
        let Some(item) = item else {
            for (_, w) in windows.drain() {
                tokio::spawn(send(client.clone(), w.items));
            }
            return;
        };
        let Some(key) = group_key(&item.req) else {
            tokio::spawn(send(client.clone(), vec![item]));
            continue;
        };
        let n = prompt_count(&item.req.prompt);
        // A request that would overflow its window closes the window first.
        if windows
            .get(&key)
            .is_some_and(|w| w.prompts + n > cfg.max_batch)
        {
            if let Some(w) = windows.remove(&key) {
                tokio::spawn(send(client.clone(), w.items));
            }
        }
        let w = windows.entry(key.clone()).or_insert_with(|| Window {
            items: Vec::new(),
            prompts: 0,
            due: Instant::now() + cfg.max_wait,
        });
        w.items.push(item);
        w.prompts += n;
        if w.prompts >= cfg.max_batch {
            if let Some(w) = windows.remove(&key) {
                tokio::spawn(send(client.clone(), w.items));
            }
        }
    }
}

/// The items' prompts as one array prompt, in order.
fn combined(items: &[Item]) -> CompletionRequest {
    let mut req = items[0].req.clone();
    req.prompt = match &req.prompt {
        Prompt::Text(_) => Prompt::Text(
            items
                .iter()
                .flat_map(|i| match &i.req.prompt {
                    Prompt::Text(t) => t.clone(),
                    Prompt::Tokens(_) => Vec::new(),
                })
                .collect(),
        ),
        Prompt::Tokens(_) => Prompt::Tokens(
            items
                .iter()
                .flat_map(|i| match &i.req.prompt {
                    Prompt::Tokens(t) => t.clone(),
                    Prompt::Text(_) => Vec::new(),
                })
                .collect(),
        ),
    };
    req
}

/// Choices `[first, first + count)` of the combined answer (OpenAI numbers them prompt by
/// prompt, `n` per prompt), re-indexed from 0.
fn share(all: &Completion, first: usize, count: usize) -> Completion {
    let mut choices: Vec<_> = all
        .choices
        .iter()
        .filter(|c| (first..first + count).contains(&c.index))
        .cloned()
        .collect();
    choices.sort_by_key(|c| c.index);
    for c in &mut choices {
        c.index -= first;
    }
    Completion {
        id: all.id.clone(),
        object: all.object,
        created: all.created,
        model: all.model.clone(),
        choices,
        usage: None,
    }
}

/// The client, counting the calls made through it.
#[derive(Clone)]
struct Sender {
    client: Client,
    counters: Arc<Counters>,
}

impl Sender {
    async fn completions(&self, req: &CompletionRequest) -> Result<Completion> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.client.completions(req).await
    }
}

async fn send(client: Sender, items: Vec<Item>) {
    if items.len() == 1 {
        let Some(item) = items.into_iter().next() else {
            return;
        };
        let _ = item.reply.send(client.completions(&item.req).await);
        return;
    }
    let n = items[0].req.fields.n.max(1);
    match client.completions(&combined(&items)).await {
        Ok(all) => {
            let mut first = 0;
            for item in items {
                let count = prompt_count(&item.req.prompt) * n;
                let mine = share(&all, first, count);
                first += count;
                let answer = if mine.choices.len() == count {
                    Ok(mine)
                } else {
                    Err(Error::Decode(format!(
                        "the combined answer has {} of this request's {count} choices",
                        mine.choices.len()
                    )))
                };
                let _ = item.reply.send(answer);
            }
        }
        Err(Error::Status { status, .. }) if (400..500).contains(&status) => {
            // One bad prompt refuses the whole array: each request on its own finds out
            // whether it was the one.
            let alone = items.into_iter().map(|item| {
                let client = client.clone();
                async move {
                    let _ = item.reply.send(client.completions(&item.req).await);
                }
            });
            futures::future::join_all(alone).await;
        }
        Err(e) => {
            for item in items {
                let _ = item.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> CompletionRequest {
        CompletionRequest::from_json(&v).unwrap()
    }

    #[test]
    fn only_requests_equal_but_for_the_prompt_share_a_call() {
        let a = group_key(&req(json!({"prompt": "a", "max_tokens": 1})));
        let b = group_key(&req(json!({"prompt": ["b", "c"], "max_tokens": 1})));
        let other = group_key(&req(json!({"prompt": "a", "max_tokens": 2})));
        let tokens = group_key(&req(json!({"prompt": [1, 2], "max_tokens": 1})));
        assert!(a.is_some() && a == b);
        assert_ne!(a, other);
        assert_ne!(a, tokens);
        assert_eq!(group_key(&req(json!({"prompt": "a", "seed": 3}))), None);
    }

    #[test]
    fn each_caller_gets_its_prompts_choices_reindexed() {
        let all: Completion = serde_json::from_value(json!({
            "id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": (0..6).map(|i| json!({"index": i, "text": format!("t{i}"), "logprobs": null, "finish_reason": "length"})).collect::<Vec<_>>(),
            "usage": {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12},
        }))
        .unwrap();
        // n = 2: the second caller's one prompt owns choices 2 and 3.
        let mine = share(&all, 2, 2);
        let texts: Vec<_> = mine
            .choices
            .iter()
            .map(|c| (c.index, c.text.as_str()))
            .collect();
        assert_eq!(texts, [(0, "t2"), (1, "t3")]);
        assert_eq!(mine.usage, None);
    }
}
