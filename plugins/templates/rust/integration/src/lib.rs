//! `{{name}}`: an integration that writes one log line per event (after the response was sent).

use llmos_plugin::integration::{Event, Guest};
use llmos_plugin::{Error, config, log};

struct {{name_camel}}Plugin;

impl Guest for {{name_camel}}Plugin {
    fn on_event(event: Event) -> Result<(), Error> {
        let prefix = config::get_or("prefix", "{{name}}");
        log::info(&format!(
            "{prefix}: {} model={} route={} request={}",
            event.kind, event.context.model, event.context.route, event.context.request_id
        ));
        Ok(())
    }
}

llmos_plugin::export_integration!({{name_camel}}Plugin);
