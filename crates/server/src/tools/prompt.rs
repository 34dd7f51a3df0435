//! What the chat template sees. Templates that know tools get them as transformers
//! passes them (`tools`, assistant `tool_calls` with arguments as objects, `tool`
//! messages); for the others the tools go into a system instruction, earlier calls into
//! the assistant's text in the same syntax the model is asked to write, and tool results
//! into user turns.

use super::ToolSyntax;
use api::{Message, Role, ToolChoice, ToolFields};
use serde_json::{json, Value};
use tokenizer::ChatMessage;

/// The messages and `tools` to render.
pub fn template_input(
    syntax: ToolSyntax,
    messages: &[Message],
    f: &ToolFields,
) -> (Vec<ChatMessage>, Option<Value>) {
    if syntax.template_renders_tools() {
        let msgs = messages.iter().map(as_template_sees).collect();
        let tools = f
            .active()
            .then(|| serde_json::to_value(&f.tools).unwrap_or_default());
        return (msgs, tools);
    }
    (instructed(messages, f), None)
}

fn arguments(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

fn as_template_sees(m: &Message) -> ChatMessage {
    ChatMessage {
        role: m.role.as_str().to_string(),
        content: m.content.clone(),
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function", "function": {
                    "name": c.function.name, "arguments": arguments(&c.function.arguments)}})
            })
            .collect(),
        tool_call_id: m.tool_call_id.clone(),
    }
}

/// The instruction for a template without tool support.
fn instruction(f: &ToolFields) -> String {
    let mut s = String::from(
        "You can call functions. Each is described as JSON inside <tools></tools>:\n<tools>\n",
    );
    for t in &f.tools {
        let mut d = json!({"name": t.function.name, "parameters": t.function.parameters});
        if let Some(desc) = &t.function.description {
            d["description"] = json!(desc);
        }
        s.push_str(&d.to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call functions, reply with nothing but a list of calls in this format:\n<tool_call>[{\"name\": \"function name\", \"arguments\": {\"argument\": \"value\"}}]</tool_call>\n",
    );
    match &f.tool_choice {
        ToolChoice::Required => s.push_str("You must call at least one function."),
        ToolChoice::Function(n) => s.push_str(&format!("You must call {n}.")),
        _ => s.push_str("If no function fits, answer in plain text."),
    }
    s
}

/// Earlier calls, written the way the model is asked to write them.
fn calls_text(m: &Message) -> String {
    let calls: Vec<String> = m
        .tool_calls
        .iter()
        .map(|c| {
            format!(
                "{{\"name\": {}, \"arguments\": {}}}",
                json!(c.function.name),
                arguments(&c.function.arguments)
            )
        })
        .collect();
    format!("<tool_call>[{}]</tool_call>", calls.join(", "))
}

fn instructed(messages: &[Message], f: &ToolFields) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if f.active() {
        let text = instruction(f);
        match messages.first() {
            Some(m) if m.role == Role::System => out.push(ChatMessage::new(
                "system",
                &format!("{}\n\n{text}", m.content),
            )),
            _ => out.push(ChatMessage::new("system", &text)),
        }
    }
    let skip = usize::from(f.active() && messages.first().is_some_and(|m| m.role == Role::System));
    for m in &messages[skip..] {
        match m.role {
            Role::Tool => {
                let part = format!("<tool_response>\n{}\n</tool_response>", m.content);
                // Results of one turn's calls go back together, as one user turn.
                match out.last_mut() {
                    Some(last)
                        if last.role == "user" && last.content.ends_with("</tool_response>") =>
                    {
                        last.content.push('\n');
                        last.content.push_str(&part);
                    }
                    _ => out.push(ChatMessage::new("user", &part)),
                }
            }
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls = calls_text(m);
                let content = if m.content.is_empty() {
                    calls
                } else {
                    format!("{}\n{calls}", m.content)
                };
                out.push(ChatMessage::new("assistant", &content));
            }
            _ => out.push(ChatMessage::new(m.role.as_str(), &m.content)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::ToolCall;

    #[test]
    fn history_is_written_in_the_syntax_the_model_is_asked_for() {
        let tools: ToolFields = ToolFields {
            tools: vec![serde_json::from_value(json!({"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})).unwrap()],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
        };
        let mut asked = Message::new(Role::Assistant, "");
        asked.tool_calls = vec![
            ToolCall::function(
                "c1".into(),
                "get_weather".into(),
                "{\"city\": \"Paris\"}".into(),
            ),
            ToolCall::function(
                "c2".into(),
                "get_weather".into(),
                "{\"city\": \"Rome\"}".into(),
            ),
        ];
        let mut r1 = Message::new(Role::Tool, "18C");
        r1.tool_call_id = Some("c1".into());
        let mut r2 = Message::new(Role::Tool, "25C");
        r2.tool_call_id = Some("c2".into());
        let msgs = vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Weather in Paris and Rome?"),
            asked,
            r1,
            r2,
        ];
        let (out, t) = template_input(ToolSyntax::Json, &msgs, &tools);
        assert!(t.is_none());
        assert_eq!(out.len(), 4);
        assert!(out[0]
            .content
            .starts_with("Be brief.\n\nYou can call functions."));
        assert!(out[0].content.contains("\"description\":\"Weather now\""));
        assert_eq!(
            out[2].content,
            "<tool_call>[{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\":\"Rome\"}}]</tool_call>"
        );
        assert_eq!(out[3].role, "user");
        assert_eq!(
            out[3].content,
            "<tool_response>\n18C\n</tool_response>\n<tool_response>\n25C\n</tool_response>"
        );
        // A template that knows tools gets them as they are, arguments as objects.
        let (out, t) = template_input(ToolSyntax::Hermes, &msgs, &tools);
        assert_eq!(t.unwrap()[0]["function"]["name"], "get_weather");
        assert_eq!(
            out[2].tool_calls[1]["function"]["arguments"]["city"],
            "Rome"
        );
        assert_eq!(out[4].role, "tool");
        assert_eq!(out[4].tool_call_id.as_deref(), Some("c2"));
    }
}
