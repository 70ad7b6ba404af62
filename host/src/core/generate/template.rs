//! Chat templates: the Jinja text of `chat_template`, rendered with `minijinja` and the
//! variables Hugging Face passes (`messages`, `add_generation_prompt`, `bos_token`,
//! `eos_token`, and the `raise_exception` function).

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text.
    pub content: String,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    takes_tools: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatTemplate")
    }
}

fn raise_exception(msg: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        msg,
    ))
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error names the line.
    pub fn new(source: &str) -> Result<Self, String> {
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("chat_template does not compile: {e}"))?;
        Ok(Self { env, takes_tools: source.contains("tools") })
    }

    /// Whether the template reads Hugging Face's `tools` variable (else llmos describes the
    /// tools in a system message).
    pub fn takes_tools(&self) -> bool {
        self.takes_tools
    }

    /// The prompt text of `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage], bos: &str, eos: &str) -> Result<String, String> {
        self.render_with_tools(messages, bos, eos, None)
    }

    /// [`Self::render`] with Hugging Face's `tools` (a list of `{"type": "function", …}`).
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        bos: &str,
        eos: &str,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, String> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| format!("chat_template: {e}"))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => bos,
            eos_token => eos,
            tools => tools,
        })
        .map_err(|e| format!("the model's chat_template refused these messages: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_and_exceptions_surface() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('no tools') }}{% endif %}\
             <|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}\
             {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        )
        .unwrap();
        let msgs = [ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }];
        assert_eq!(
            t.render(&msgs, "", "").unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let tool = [ChatMessage {
            role: "tool".into(),
            content: "x".into(),
        }];
        assert!(t.render(&tool, "", "").unwrap_err().contains("no tools"));
        assert!(ChatTemplate::new("{% for %}").unwrap_err().contains("compile"));
    }
}
