//! `"truncate": "oldest"` on chat (docs/generation.md §6b): when the conversation and
//! `max_tokens` do not fit the model's context, the oldest turns are dropped (never the
//! system message, never the last user message) until they do. Without it, an overlong
//! conversation stays the engine's 400 `context_length_exceeded`.

use crate::api::error::ApiError;
use crate::core::Model;
use crate::core::generate::ChatMessage;

/// What to do with a conversation longer than the context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Truncate {
    /// Refuse it (400 `context_length_exceeded`).
    #[default]
    Refuse,
    /// Drop the oldest turns.
    Oldest,
}

impl Truncate {
    /// Parses the `truncate` field of a chat body.
    pub fn parse(v: Option<&serde_json::Value>) -> Result<Self, ApiError> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(Self::Refuse),
            Some(serde_json::Value::String(s)) if s == "oldest" => Ok(Self::Oldest),
            Some(serde_json::Value::String(s)) if s == "none" => Ok(Self::Refuse),
            Some(other) => Err(ApiError::invalid(
                Some("truncate".into()),
                format!("`truncate` is {other}: accepted are \"oldest\" (drop the oldest turns until the prompt fits) and \"none\" (the default: refuse)"),
            )),
        }
    }
}

/// The oldest turn that may be dropped: the first message that is neither a system message
/// nor the last user message, with the replies that follow it up to the next user message.
/// `None` when nothing may be dropped.
fn oldest_turn(messages: &[ChatMessage]) -> Option<std::ops::Range<usize>> {
    let last_user = messages.iter().rposition(|m| m.role == "user")?;
    let start = messages.iter().position(|m| m.role != "system")?;
    if start >= last_user {
        return None;
    }
    let rest = messages.get(start.saturating_add(1)..last_user)?;
    let len = rest.iter().position(|m| m.role == "user").map_or(rest.len(), |p| p);
    Some(start..start.saturating_add(1).saturating_add(len))
}

/// Token ids of the conversation, after dropping the oldest turns when asked and needed.
/// Tokens to leave for the answer: `max_tokens`, or at least one.
pub(crate) fn fit(
    m: &Model,
    messages: &mut Vec<ChatMessage>,
    how: Truncate,
    max_tokens: Option<usize>,
    tools: Option<&serde_json::Value>,
) -> Result<Vec<u32>, ApiError> {
    let mut ids = m.chat_ids_with_tools(messages, tools)?;
    let Some(context) = m.context_length() else { return Ok(ids) };
    let room = max_tokens.unwrap_or(1);
    if how == Truncate::Refuse {
        return Ok(ids); // the engine answers an overflow with context_length_exceeded
    }
    let mut dropped = 0usize;
    while ids.len().saturating_add(room) > context {
        let Some(turn) = oldest_turn(messages) else {
            return Err(ApiError::invalid(
                Some("messages".into()),
                format!(
                    "the prompt is {} tokens after dropping the {dropped} oldest messages (the system message and the last user message are kept) and max_tokens is {room}: together more than the context length {context} of {}; shorten the last message or lower max_tokens",
                    ids.len(),
                    m.name()
                ),
            )
            .with_code("context_length_exceeded"));
        };
        dropped = dropped.saturating_add(turn.len());
        messages.drain(turn);
        ids = m.chat_ids_with_tools(messages, tools)?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(roles: &[&str]) -> Vec<ChatMessage> {
        roles.iter().map(|r| ChatMessage { role: (*r).into(), content: String::new() }).collect()
    }

    #[test]
    fn the_oldest_turn_is_a_user_message_and_its_replies_never_the_system_or_last_user() {
        assert_eq!(oldest_turn(&conv(&["system", "user", "assistant", "user"])), Some(1..3));
        assert_eq!(oldest_turn(&conv(&["user", "assistant", "assistant", "user", "assistant", "user"])), Some(0..3));
        assert_eq!(oldest_turn(&conv(&["assistant", "user"])), Some(0..1));
        assert_eq!(oldest_turn(&conv(&["system", "user"])), None);
        assert_eq!(oldest_turn(&conv(&["system", "user", "assistant"])), None);
    }

    #[test]
    fn truncate_takes_oldest_or_none() {
        assert_eq!(Truncate::parse(None).unwrap(), Truncate::Refuse);
        assert_eq!(Truncate::parse(Some(&serde_json::json!("oldest"))).unwrap(), Truncate::Oldest);
        let e = Truncate::parse(Some(&serde_json::json!("middle"))).unwrap_err();
        assert!(e.message.contains("\"oldest\""), "{}", e.message);
    }
}
