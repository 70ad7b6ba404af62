//! `{{name}}`: a policy that denies every request with an input containing the configured
//! `denied_word` (case-insensitive) and lets every response through.

use llmos_plugin::policy::{Guest, Request, RequestVerdict, Response, ResponseVerdict};
use llmos_plugin::{Error, config};

struct {{name_camel}}Plugin;

impl Guest for {{name_camel}}Plugin {
    fn check_request(request: Request) -> Result<RequestVerdict, Error> {
        let word = config::get_or("denied_word", "").trim().to_lowercase();
        if word.is_empty() {
            return Ok(RequestVerdict::Allow);
        }
        Ok(
            match request
                .inputs
                .iter()
                .position(|text| text.to_lowercase().contains(&word))
            {
                Some(i) => RequestVerdict::Deny(format!("input {i} contains {word:?}")),
                None => RequestVerdict::Allow,
            },
        )
    }

    fn check_response(_response: Response) -> Result<ResponseVerdict, Error> {
        Ok(ResponseVerdict::Allow)
    }
}

llmos_plugin::export_policy!({{name_camel}}Plugin);
