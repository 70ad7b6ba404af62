//! `{{name}}`: a preprocessor that upper-cases every input and appends the configured `suffix`.

use llmos_plugin::preprocessor::{Guest, Request};
use llmos_plugin::{Error, config, log};

struct {{name_camel}}Plugin;

impl Guest for {{name_camel}}Plugin {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        let suffix = config::get_or("suffix", "");
        log::debug(&format!("{} inputs", request.inputs.len()));
        Ok(request
            .inputs
            .iter()
            .map(|text| format!("{}{suffix}", text.to_uppercase()))
            .collect())
    }
}

llmos_plugin::export_preprocessor!({{name_camel}}Plugin);
