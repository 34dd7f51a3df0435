//! The one generation path of the server: chat and completions, streaming or not, go
//! validate → (response cache) → render → tokenize → submit → events → format through
//! here, so whatever wraps generation (the response cache, batch jobs, tracing) wraps it
//! once.

use crate::cache_policy::{plan, Plan};
use crate::error::submit_error;
use crate::flight_item::Item;
use crate::generation::ChoiceRun;
use crate::otel::genai::{GenerationInfo, GenerationTrace};
use crate::produce::{produce, Keep};
use crate::reply::{reply, CacheOutcome, EndpointFormat, ReplyMeta};
use crate::state::{AppState, Loaded};
use crate::tools::ToolSyntax;
use crate::trace::RequestIds;
use api::{ApiError, ErrorType, Message, SamplingFields, Structured, ToolFields};
use axum::http::HeaderMap;
use axum::response::Response;
use cache::metrics_names as cm;
use cache::{Entry, Flights, Joined, Key, Lane, Producer, Reader, ResponseCache};
use engine::GenerationRequest;
use model::SamplingParams;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Where the prompt tokens come from.
#[derive(Clone, Serialize)]
pub enum PromptSource {
    /// Rendered with the model's chat template, with the tools offered.
    Chat {
        messages: Vec<Message>,
        tools: ToolFields,
    },
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

pub struct GenerationInput {
    /// `chat` or `completions`: part of the cache key.
    pub endpoint: &'static str,
    pub source: PromptSource,
    pub fields: SamplingFields,
    /// Top alternatives per token; `None` computes no log-probabilities.
    pub logprobs: Option<usize>,
    /// The HTTP request's ids, for the engine's log lines.
    pub tag: Option<Arc<engine::RequestTag>>,
    /// The HTTP request's ids, spans and token count.
    pub ids: Option<RequestIds>,
    /// Interactive, or a batch job's line (run in the capacity interactive work leaves).
    pub class: engine::PriorityClass,
}

/// Who a generation is for, as its spans and access line see it.
#[derive(Clone)]
struct Observed {
    ids: Option<RequestIds>,
    /// `chat` or `text_completion` (GenAI's operation names).
    operation: &'static str,
}

impl Observed {
    fn of(input: &GenerationInput) -> Self {
        Self {
            ids: input.ids.clone(),
            operation: if input.endpoint == "chat" {
                "chat"
            } else {
                "text_completion"
            },
        }
    }

    /// The generation span for a run of the model, when the request is traced.
    fn generation_span(
        &self,
        st: &AppState,
        fields: &SamplingFields,
        choices: usize,
    ) -> Option<Arc<GenerationTrace>> {
        let ids = self.ids.as_ref()?;
        let info = GenerationInfo {
            operation: self.operation,
            model: &st.config.model_id,
            request_id: &ids.request_id,
            temperature: f64::from(fields.temperature),
            top_p: f64::from(fields.top_p),
            max_tokens: fields.max_tokens,
            seed: fields.seed,
            n: fields.n,
            choices,
        };
        GenerationTrace::start(st.tracing()?, ids.span.as_ref()?, &info).map(Arc::new)
    }
}

/// The conversation as the model's chat template renders it, tools included.
pub(crate) fn render_chat(
    template: Option<&tokenizer::ChatTemplate>,
    messages: &[Message],
    tools: &ToolFields,
    add_generation_prompt: bool,
) -> Result<String, ApiError> {
    let template = template.ok_or_else(|| {
        ApiError::bad_request("this model has no chat template; use /v1/completions")
    })?;
    let syntax = ToolSyntax::detect(template.source());
    let (msgs, tools) = crate::tools::prompt::template_input(syntax, messages, tools);
    template
        .render_with_tools(&msgs, tools.as_ref(), add_generation_prompt)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))
}

/// Renders and tokenizes on the blocking pool: a long prompt must not stall the async
/// workers that serve every other connection.
async fn tokenize(st: &Arc<AppState>, source: &PromptSource) -> Result<Vec<Vec<u32>>, ApiError> {
    let source = source.clone();
    let loaded = crate::routes::ready(st)?;
    let tokenizer = loaded.tokenizer.clone();
    let template = loaded.template.clone();
    let work = move || -> Result<Vec<Vec<u32>>, ApiError> {
        let server = |e: tokenizer::Error| ApiError::new(500, ErrorType::Server, e.to_string());
        match source {
            PromptSource::Tokens(t) => Ok(t),
            PromptSource::Texts(texts) => texts
                .iter()
                .map(|t| tokenizer.encode(t, true, true).map_err(server))
                .collect(),
            PromptSource::Chat { messages, tools } => {
                let text = render_chat(template.as_deref(), &messages, &tools, true)?;
                // The template's own special tokens must be parsed; text inside messages
                // is user data, but llama.cpp and vLLM parse it the same way, and agents
                // rely on it.
                Ok(vec![tokenizer.encode(&text, true, true).map_err(server)?])
            }
        }
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(500, ErrorType::Server, format!("tokenizing failed: {e}")))?
}

/// How long compiling an output constraint may take before the request is refused
/// (llguidance's own limits usually stop a pathological grammar much sooner).
const COMPILE_LIMIT: Duration = Duration::from_secs(10);

/// What the answer must match: the request's structured output, or its tools' call
/// syntax; after the thinking, when the model thinks.
fn output_spec(
    st: &AppState,
    input: &GenerationInput,
) -> Result<Option<constrain::Spec>, ApiError> {
    let f = &input.fields;
    let tools = match &input.source {
        PromptSource::Chat { tools, .. } if tools.active() => Some(tools),
        _ => None,
    };
    let spec = match (&f.structured, tools) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "tool_choice",
                "an output constraint (response_format, structured_outputs) cannot be combined with tools; send 'tool_choice': 'none' or drop the constraint",
            ))
        }
        (Some(s), None) => match s.clone() {
            Structured::JsonObject => constrain::Spec::JsonObject,
            Structured::JsonSchema(s) => constrain::Spec::JsonSchema(s),
            Structured::Regex(r) => constrain::Spec::Regex(r),
            Structured::Choice(c) => constrain::Spec::Choice(c),
            Structured::Grammar(g) => constrain::Spec::Lark(g),
        },
        (None, Some(t)) => {
            let syntax = crate::routes::ready(st)?
                .template
                .as_ref()
                .map(|t| ToolSyntax::detect(t.source()))
                .unwrap_or(ToolSyntax::Json);
            match crate::tools::grammar::lark(syntax, t) {
                Some(g) => constrain::Spec::Lark(g),
                None => return Ok(None),
            }
        }
        (None, None) => return Ok(None),
    };
    if f.ignore_eos {
        return Err(ApiError::invalid(
            "ignore_eos",
            "'ignore_eos' cannot be combined with an output constraint or tools: the answer must end where the constraint is complete",
        ));
    }
    Ok(Some(match st.config.reasoning_parser {
        Some(p) => constrain::Spec::AfterThinking {
            starts_inside: p.starts_thinking(),
            answer: Box::new(spec),
        },
        None => spec,
    }))
}

/// Compiles the request's output constraint on the blocking pool, never on the engine
/// thread: other sequences keep decoding meanwhile.
async fn compile_constraint(
    st: &Arc<AppState>,
    input: &GenerationInput,
) -> Result<Option<Arc<dyn model::ProcessorFactory>>, ApiError> {
    let Some(spec) = output_spec(st, input)? else {
        return Ok(None);
    };
    let tok = crate::routes::ready(st)?.tokenizer.clone();
    let state = st.clone();
    let task = tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        let r = state.grammars(&tok).and_then(|g| g.compile(&spec));
        metrics::histogram!(crate::GRAMMAR_COMPILE_SECONDS).record(t.elapsed().as_secs_f64());
        r
    });
    let invalid = |msg: String| {
        ApiError::invalid("structured_outputs", msg).with_code("invalid_output_constraint")
    };
    match tokio::time::timeout(COMPILE_LIMIT, task).await {
        Err(_) => Err(invalid(format!(
            "the output constraint took longer than {} s to compile; simplify it",
            COMPILE_LIMIT.as_secs()
        ))),
        Ok(Err(e)) => Err(ApiError::new(
            500,
            ErrorType::Server,
            format!("compiling the output constraint failed: {e}"),
        )),
        Ok(Ok(Err(e))) => Err(invalid(format!("the output constraint is invalid: {e}"))),
        Ok(Ok(Ok(c))) => Ok(Some(c)),
    }
}

/// Everything that can refuse a request before it runs: rendering and tokenizing the
/// prompt, compiling its constraint, and checking each choice against the engine.
async fn prepare(
    st: &Arc<AppState>,
    input: &GenerationInput,
) -> Result<Vec<GenerationRequest>, ApiError> {
    let constraint = compile_constraint(st, input).await?;
    let prompts = tokenize(st, &input.source).await?;
    engine_requests(
        st,
        &prompts,
        &input.fields,
        input.logprobs,
        &input.tag,
        &constraint,
        input.class,
    )
}

fn engine_requests(
    st: &AppState,
    prompts: &[Vec<u32>],
    f: &SamplingFields,
    logprobs: Option<usize>,
    tag: &Option<Arc<engine::RequestTag>>,
    constraint: &Option<Arc<dyn model::ProcessorFactory>>,
    class: engine::PriorityClass,
) -> Result<Vec<GenerationRequest>, ApiError> {
    let loaded = crate::routes::ready(st)?;
    let ctx = loaded.engine.context_length();
    let total = prompts.len() * f.n;
    let most = loaded.engine.max_submission();
    if total > most {
        // It could never be queued whole, however long the client waited: not a 429.
        return Err(ApiError::invalid(
            "n",
            format!("this request asks for {total} choices (n = {} × {} prompts), more than the server can ever queue at once ({most}, --max-waiting)", f.n, prompts.len()),
        ));
    }
    let mut reqs = Vec::with_capacity(total);
    for p in prompts {
        if p.is_empty() {
            return Err(ApiError::invalid("prompt", "the prompt is empty"));
        }
        if p.len() >= ctx && f.max_tokens.is_none() {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "the prompt has {} tokens but the context length is {ctx}",
                    p.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let max_tokens = f.max_tokens.unwrap_or(ctx.saturating_sub(p.len()));
        metrics::histogram!(engine::metrics_names::REQUEST_N).record(f.n as f64);
        for i in 0..f.n {
            let req = GenerationRequest {
                prompt: p.clone(),
                sampling: SamplingParams {
                    temperature: f.temperature,
                    top_k: f.top_k,
                    top_p: f.top_p,
                    min_p: f.min_p,
                    repetition_penalty: f.repetition_penalty,
                    frequency_penalty: f.frequency_penalty,
                    presence_penalty: f.presence_penalty,
                    // Each of n choices gets its own stream of randomness, reproducibly.
                    seed: f.seed.map(|s| s.wrapping_add(i as u64)),
                    logit_bias: f.logit_bias.clone(),
                },
                max_tokens,
                stop_tokens: if f.ignore_eos {
                    Vec::new()
                } else {
                    loaded.tokenizer.eog_tokens().to_vec()
                },
                logprobs,
                priority: f.priority,
                class: st.config.class_of(class, f.priority),
                tag: tag.clone(),
                constraint: constraint.clone(),
            };
            loaded.engine.validate(&req).map_err(submit_error)?;
            reqs.push(req);
        }
    }
    Ok(reqs)
}

fn meta_for(
    f: &SamplingFields,
    choices: usize,
    outcome: CacheOutcome,
    obs: &Observed,
) -> ReplyMeta {
    ReplyMeta {
        tokens: obs.ids.as_ref().map(|i| i.tokens.clone()),
        n: f.n,
        choices,
        stream: f.stream,
        include_usage: f.stream_options.include_usage,
        outcome,
    }
}

/// Submits every choice (all are queued or none is) and starts producing into `producer`.
fn submit(
    st: &Arc<AppState>,
    loaded: &Loaded,
    reqs: Vec<GenerationRequest>,
    fields: &SamplingFields,
    producer: Producer<Item>,
    store: Option<(Key, Lane, Option<Duration>)>,
    obs: &Observed,
) -> Result<(), ApiError> {
    let span = obs.generation_span(st, fields, reqs.len());
    let lens: Vec<usize> = reqs.iter().map(|r| r.prompt.len()).collect();
    let streams = match loaded.engine.submit_all(reqs) {
        Ok(s) => s,
        Err(e) => {
            let e = submit_error(e);
            // Followers that attached meanwhile get the same answer.
            producer.push(Item::Error(e.clone()));
            return Err(e);
        }
    };
    let runs = streams
        .into_iter()
        .zip(lens)
        .enumerate()
        .map(|(index, (stream, prompt_tokens))| {
            ChoiceRun::new(
                index,
                stream,
                loaded.tokenizer.clone(),
                fields.stop.clone(),
                prompt_tokens,
                st.cut_signal(),
            )
            .traced(span.clone())
        })
        .collect();
    let linger = store.and_then(|(.., linger)| linger);
    let store = store.and_then(|(key, lane, _)| {
        Some(Keep {
            cache: st.cache.clone()?,
            key,
            lane,
        })
    });
    tokio::spawn(produce(runs, producer, store, linger));
    Ok(())
}

fn replay(e: &Entry) -> Reader<Item> {
    Reader::replay(e.events.iter().cloned().map(Item::Event).collect())
}

/// Answers one chat or completions request: from the response cache, by attaching to an
/// identical generation in flight, or by running the model.
pub async fn generate<F: EndpointFormat>(
    st: &Arc<AppState>,
    headers: &HeaderMap,
    input: GenerationInput,
    fmt: F,
) -> Result<Response, ApiError> {
    crate::routes::check_model(st, &input.fields.model)?;
    let choices = input.fields.n
        * match &input.source {
            PromptSource::Chat { .. } => 1,
            PromptSource::Texts(t) => t.len(),
            PromptSource::Tokens(t) => t.len(),
        };
    let guard = st.begin_request();
    let loaded = crate::routes::ready(st)?;
    let tokenizer = loaded.tokenizer.clone();
    let obs = Observed::of(&input);
    let plan = plan(st, headers, &input);
    let (key, control, lane, linger) = match plan {
        Plan::Bypass => {
            metrics::counter!(cm::BYPASSES).increment(1);
            let reqs = prepare(st, &input).await?;
            let (producer, reader) = Flights::private();
            submit(st, loaded, reqs, &input.fields, producer, None, &obs)?;
            let m = meta_for(&input.fields, choices, CacheOutcome::Bypass, &obs);
            return reply(st, tokenizer, reader, fmt, m, guard).await;
        }
        Plan::Cacheable {
            key,
            control,
            lane,
            linger,
        } => (key, control, lane, linger),
    };
    let cache = st.cache.clone().ok_or_else(|| {
        ApiError::new(
            500,
            ErrorType::Server,
            "the response cache is not configured",
        )
    })?;
    metrics::counter!(cm::LOOKUPS).increment(1);
    if !control.no_cache {
        if let Some(e) = cache.get_l1(&key, control.max_age, lane) {
            let m = meta_for(&input.fields, choices, CacheOutcome::HitL1, &obs);
            return reply(st, tokenizer, replay(&e), fmt, m, guard).await;
        }
    }
    // Invalid requests fail here, before they could lead a flight others attach to.
    let reqs = prepare(st, &input).await?;
    let (producer, reader) = if control.no_cache {
        // Asked to run afresh: not shared, but it refreshes the entry.
        Flights::private()
    } else {
        match st.flights.join_or_lead(key) {
            Joined::Follower(reader) => {
                metrics::counter!(cm::COALESCED).increment(1);
                let m = meta_for(&input.fields, choices, CacheOutcome::Coalesced, &obs);
                return reply(st, tokenizer, reader, fmt, m, guard).await;
            }
            Joined::Leader(producer, reader) => {
                // The L2 lookup and the submission run on their own task: if this client
                // leaves meanwhile, the followers that attached still get their answer.
                let task = tokio::spawn(lead(
                    st.clone(),
                    cache,
                    Lead {
                        key,
                        lane,
                        max_age: control.max_age,
                        linger,
                    },
                    reqs,
                    input.fields.clone(),
                    producer,
                    obs.clone(),
                ));
                let outcome = task.await.map_err(|e| {
                    ApiError::new(
                        500,
                        ErrorType::Server,
                        format!("starting the generation failed: {e}"),
                    )
                })??;
                let m = meta_for(&input.fields, choices, outcome, &obs);
                return reply(st, tokenizer, reader, fmt, m, guard).await;
            }
        }
    };
    metrics::counter!(cm::MISSES).increment(1);
    submit(
        st,
        loaded,
        reqs,
        &input.fields,
        producer,
        Some((key, lane, linger)),
        &obs,
    )?;
    let m = meta_for(&input.fields, choices, CacheOutcome::Miss, &obs);
    reply(st, tokenizer, reader, fmt, m, guard).await
}

struct Lead {
    key: Key,
    lane: Lane,
    max_age: Option<Duration>,
    linger: Option<Duration>,
}

/// What the leader of a flight does after joining: the L2, else the model.
async fn lead(
    st: Arc<AppState>,
    cache: Arc<ResponseCache>,
    l: Lead,
    reqs: Vec<GenerationRequest>,
    fields: SamplingFields,
    producer: Producer<Item>,
    obs: Observed,
) -> Result<CacheOutcome, ApiError> {
    let in_l2 = match l.lane {
        Lane::Shared => cache.get_l2(&l.key, l.max_age).await,
        Lane::Idempotent => None,
    };
    if let Some(e) = in_l2 {
        for ev in &e.events {
            producer.push(Item::Event(ev.clone()));
        }
        return Ok(CacheOutcome::HitL2);
    }
    metrics::counter!(cm::MISSES).increment(1);
    let loaded = match crate::routes::ready(&st) {
        Ok(l) => l,
        Err(e) => {
            producer.push(Item::Error(e.clone()));
            return Err(e);
        }
    };
    submit(
        &st,
        loaded,
        reqs,
        &fields,
        producer,
        Some((l.key, l.lane, l.linger)),
        &obs,
    )?;
    Ok(CacheOutcome::Miss)
}
