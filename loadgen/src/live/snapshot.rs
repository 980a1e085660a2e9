//! The last published exposition, shared between the run's collecting loop and the endpoint.

use std::sync::{Arc, Mutex};

use super::render::{self, LiveView};

/// The last published exposition, shared between the run's collecting loop (writer, a few times
/// a second) and the HTTP endpoint (readers): scrapes cost the run one lock and an `Arc` clone.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    text: Mutex<Arc<str>>,
}

impl LiveMetrics {
    /// An empty exposition until the first publish (a scrape before the run starts gets the
    /// generator's metric families with nothing counted yet).
    pub fn new() -> Arc<Self> {
        let empty = render::render(&LiveView::default());
        Arc::new(Self {
            text: Mutex::new(Arc::from(empty)),
        })
    }

    /// Render `view` and make it what the next scrape sees.
    pub fn publish(&self, view: &LiveView<'_>) {
        let text: Arc<str> = Arc::from(render::render(view));
        if let Ok(mut slot) = self.text.lock() {
            *slot = text;
        }
    }

    /// The exposition now.
    pub fn text(&self) -> Arc<str> {
        self.text
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}
