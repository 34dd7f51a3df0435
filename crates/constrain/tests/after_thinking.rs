//! A constraint after a `<think>` block holds the answer and leaves the thinking free:
//! driven token by token over the default model's real vocabulary.

use constrain::{Grammars, Spec};
use gguf::GgufFile;
use model::paths::test_model_path;
use model::ProcessorFactory;
use std::sync::Arc;
use tokenizer::Tokenizer;

fn grammars() -> (Arc<Tokenizer>, Grammars) {
    let tok = Arc::new(
        Tokenizer::from_gguf(&GgufFile::open(test_model_path(&|k| std::env::var_os(k))).unwrap())
            .unwrap(),
    );
    let g = Grammars::new(tok.clone()).unwrap();
    (tok, g)
}

/// How many of `text`'s tokens the constraint lets through before it masks one.
fn accepted(tok: &Tokenizer, spec: &Spec, g: &Grammars, text: &str) -> (usize, usize) {
    let ids = tok.encode(text, false, false).unwrap();
    let mut p = g.compile(spec).unwrap().make();
    for (i, &t) in ids.iter().enumerate() {
        let mut logits = vec![0.0f32; tok.vocab_size()];
        p.process(&mut logits);
        if !logits[t as usize].is_finite() {
            return (i, ids.len());
        }
        p.accept(t);
    }
    (ids.len(), ids.len())
}

#[test]
fn the_thinking_is_free_and_the_answer_is_held() {
    let (tok, g) = grammars();
    let choice = Spec::Choice(vec!["yes".into(), "no".into()]);
    let qwen = Spec::AfterThinking {
        starts_inside: false,
        answer: Box::new(choice.clone()),
    };
    let r1 = Spec::AfterThinking {
        starts_inside: true,
        answer: Box::new(Spec::JsonSchema(serde_json::json!({
            "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}))),
    };
    for (spec, text, whole) in [
        (
            &qwen,
            "<think>Is it? {maybe} </thin no</think>\n\nyes",
            true,
        ),
        (&qwen, "no", true),
        (&qwen, "<think>hmm</think>maybe", false),
        (&qwen, "maybe", false),
        (&r1, "I think a is 3.</think>\n{\"a\": 3}", true),
        (&r1, "<think>a is 3</think>{\"a\": 3}", true),
        (&r1, "a is 3</think>{\"a\": \"3\"}", false),
    ] {
        let (ok, n) = accepted(&tok, spec, &g, text);
        assert_eq!(ok == n, whole, "{text:?}: {ok} of {n} tokens let through");
    }
    // Where it stops: at the answer, never inside the thinking.
    let text = "<think>anything at all: 1, {, ]</think>perhaps";
    let (ok, _) = accepted(&tok, &qwen, &g, text);
    let thinking = tok
        .encode("<think>anything at all: 1, {, ]</think>", false, false)
        .unwrap();
    assert!(ok >= thinking.len() - 1, "stopped at token {ok}");
}
