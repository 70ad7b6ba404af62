//! Aggregation of repeated events from one source (unauthenticated refusals by peer address,
//! plugin traps by plugin): the first `burst` from a source within a window are written,
//! later ones are counted and written as one summary when the window closes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// Most sources whose refusals are tracked one by one; past it they share one bucket.
const MAX_SOURCES: usize = 10_000;
/// The bucket of sources past [`MAX_SOURCES`].
const OTHER_SOURCES: &str = "(other sources)";

/// Events from one source in its current window.
struct Window {
    start: Instant,
    written: u64,
    more: u64,
    last: String,
}

/// The open windows.
#[derive(Default)]
pub(crate) struct Refusals {
    windows: Mutex<HashMap<String, Window>>,
    last_sweep: Mutex<Option<Instant>>,
}

/// A summary to write: (source, how many more were counted, the last one's detail).
pub(crate) type Summary = (String, u64, String);

impl Refusals {
    /// Counts an event from `source`; returns whether it is among the first `burst` of its
    /// window (to be written) and the summaries of windows that closed.
    pub(crate) fn count(
        &self,
        source: &str,
        what: String,
        window: Duration,
        burst: u64,
    ) -> (bool, Vec<Summary>) {
        let now = Instant::now();
        let mut summaries = self.sweep(now, window);
        let mut map = lock(&self.windows);
        let key = if map.contains_key(source) || map.len() < MAX_SOURCES {
            source
        } else {
            OTHER_SOURCES
        };
        let first = match map.get_mut(key) {
            Some(w) if now.duration_since(w.start) < window => {
                if w.written < burst {
                    w.written = w.written.saturating_add(1);
                    true
                } else {
                    w.more = w.more.saturating_add(1);
                    w.last = what;
                    false
                }
            }
            _ => {
                if let Some(old) = map.remove(key) {
                    summaries.extend(summary(key, &old));
                }
                map.insert(
                    key.to_string(),
                    Window {
                        start: now,
                        written: 1,
                        more: 0,
                        last: String::new(),
                    },
                );
                true
            }
        };
        (first, summaries)
    }

    /// Closes the windows that have run out; returns their summaries.
    fn sweep(&self, now: Instant, window: Duration) -> Vec<Summary> {
        {
            let mut last = lock(&self.last_sweep);
            match *last {
                Some(t) if now.duration_since(t) < window => return Vec::new(),
                _ => *last = Some(now),
            }
        }
        let mut map = lock(&self.windows);
        let closed: Vec<String> = map
            .iter()
            .filter(|(_, w)| now.duration_since(w.start) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|k| map.remove(&k).and_then(|w| summary(&k, &w)))
            .collect()
    }

    /// Summaries of every refusal counted and not yet written, keeping the windows open.
    pub(crate) fn pending(&self) -> Vec<Summary> {
        let mut map = lock(&self.windows);
        map.iter_mut()
            .filter_map(|(k, w)| {
                let s = summary(k, w);
                w.more = 0;
                s
            })
            .collect()
    }
}

fn summary(source: &str, w: &Window) -> Option<Summary> {
    (w.more > 0).then(|| (source.to_string(), w.more, w.last.clone()))
}
