//! One page (tab) of the browser: navigate, evaluate JavaScript, take
//! screenshots, read its console.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::cdp::{Cdp, CdpEvent};
use super::{COMMAND_TIMEOUT, ChromiumError, Result};

pub(super) fn str_field(value: &Value, field: &str, method: &str) -> Result<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ChromiumError::BadAnswer {
            method: method.to_string(),
            detail: format!("no {field} in {value}"),
        })
}

/// A console message or uncaught exception as one line.
pub(super) fn console_line(event: &CdpEvent) -> Option<String> {
    match event.method.as_str() {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = event.params["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|arg| match (&arg["value"], &arg["description"]) {
                            (Value::String(text), _) => text.clone(),
                            (Value::Null, Value::String(text)) => text.clone(),
                            (value, _) => value.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(format!(
                "console.{}: {}",
                event.params["type"].as_str().unwrap_or("log"),
                args.join(" ")
            ))
        }
        "Runtime.exceptionThrown" => Some(format!(
            "uncaught: {}",
            exception_text(&event.params["exceptionDetails"])
        )),
        _ => None,
    }
}

fn exception_text(details: &Value) -> String {
    details["exception"]["description"]
        .as_str()
        .or_else(|| details["exception"]["value"].as_str())
        .or_else(|| details["text"].as_str())
        .unwrap_or("unknown exception")
        .to_string()
}

/// A rectangle in CSS pixels (= device pixels: the scale factor is 1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// One page (tab) of the browser.
pub struct Page {
    pub(super) cdp: Arc<Cdp>,
    pub(super) session_id: String,
    pub(super) target_id: String,
    pub(super) console: Arc<Mutex<Vec<String>>>,
    pub(super) collector: tokio::task::JoinHandle<()>,
}

impl Page {
    /// A DevTools command on this page's session.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.call_with_timeout(method, params, COMMAND_TIMEOUT)
            .await
    }

    pub async fn call_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.cdp
            .call(Some(&self.session_id), method, params, timeout)
            .await
    }

    pub fn target_id(&self) -> &str {
        &self.target_id
    }

    /// Loads `url` and waits until its document is complete.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        let answer = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(reason) = answer.get("errorText").and_then(Value::as_str) {
            return Err(ChromiumError::Navigation {
                url: url.to_string(),
                reason: reason.to_string(),
            });
        }
        self.wait_for("document.readyState === 'complete'", COMMAND_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// Evaluates a JavaScript expression in the page, awaiting a promise,
    /// and returns its value as JSON (`undefined` is `null`). A thrown
    /// exception or rejected promise is [`ChromiumError::Js`].
    pub async fn eval(&self, expression: &str) -> Result<Value> {
        self.eval_with_timeout(expression, COMMAND_TIMEOUT).await
    }

    pub async fn eval_with_timeout(&self, expression: &str, timeout: Duration) -> Result<Value> {
        let answer = self
            .call_with_timeout(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                }),
                timeout,
            )
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            return Err(ChromiumError::Js(exception_text(details)));
        }
        Ok(answer["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Polls `expression` every 50 ms until it is truthy; its value.
    pub async fn wait_for(&self, expression: &str, limit: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let value = self.eval(expression).await?;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ChromiumError::Timeout(format!("wait_for({expression})")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bounding box of the first element matching a CSS selector.
    pub async fn element_rect(&self, selector: &str) -> Result<Rect> {
        let selector = serde_json::to_string(selector).unwrap_or_default();
        let value = self
            .eval(&format!(
                "(() => {{ const r = document.querySelector({selector}).getBoundingClientRect(); \
                 return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()"
            ))
            .await?;
        serde_json::from_value(value.clone()).map_err(|err| ChromiumError::BadAnswer {
            method: "element_rect".into(),
            detail: format!("{err}: {value}"),
        })
    }

    /// A PNG of the whole viewport.
    pub async fn screenshot_png(&self) -> Result<Vec<u8>> {
        self.capture(json!({"format": "png"})).await
    }

    /// A PNG of one rectangle of the page.
    pub async fn screenshot_png_clip(&self, rect: Rect) -> Result<Vec<u8>> {
        self.capture(json!({
            "format": "png",
            "clip": {"x": rect.x, "y": rect.y, "width": rect.width, "height": rect.height, "scale": 1},
        }))
        .await
    }

    async fn capture(&self, params: Value) -> Result<Vec<u8>> {
        let answer = self.call("Page.captureScreenshot", params).await?;
        let data = str_field(&answer, "data", "Page.captureScreenshot")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|err| ChromiumError::BadAnswer {
                method: "Page.captureScreenshot".into(),
                detail: err.to_string(),
            })
    }

    /// Console messages and uncaught exceptions so far.
    pub fn console(&self) -> Vec<String> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes the page (its peer connections go with it).
    pub async fn close(self) -> Result<()> {
        self.close_target().await
    }

    /// Closes the page's target, running its unload handlers, and leaves
    /// this handle to be dropped: every later command fails.
    pub async fn close_target(&self) -> Result<()> {
        self.cdp
            .call(
                None,
                "Target.closeTarget",
                json!({"targetId": self.target_id}),
                COMMAND_TIMEOUT,
            )
            .await
            .map(|_| ())
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.collector.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_read_strings_and_exceptions() {
        let event = CdpEvent {
            method: "Runtime.consoleAPICalled".into(),
            params: json!({"type": "warn", "args": [{"type": "string", "value": "a"}, {"type": "number", "value": 3}]}),
            session_id: None,
        };
        assert_eq!(console_line(&event).unwrap(), "console.warn: a 3");
        let event = CdpEvent {
            method: "Runtime.exceptionThrown".into(),
            params: json!({"exceptionDetails": {"text": "Uncaught", "exception": {"description": "Error: boom"}}}),
            session_id: None,
        };
        assert_eq!(console_line(&event).unwrap(), "uncaught: Error: boom");
    }
}
