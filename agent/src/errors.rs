//! How an error and its causes are shown to a person: the error, then each
//! cause once.
//!
//! Error types here put only their own context in their message and expose
//! the underlying error as `source`, so printing the chain shows each piece
//! once. Some still format their source into the message as well (a field
//! named `source` in `"...: {source}"`); a cause the previous message
//! already ends with is left out, so a field tech never reads it twice.

use std::error::Error;

/// The messages of `error` and of its causes, outermost first, each cause
/// the message before it already ends with left out.
pub fn messages(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut lines: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        let repeated = lines.last().is_some_and(|last| last.ends_with(&text));
        if !repeated && !text.is_empty() {
            lines.push(text);
        }
        source = cause.source();
    }
    lines
}

/// The chain on one line, `outer: inner: root`, for reports that have one
/// line per problem (`doctor`).
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    messages(error).join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}")]
    struct Clean {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Repeats {
        path: &'static str,
        source: std::io::Error,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn each_cause_is_shown_once() {
        let clean = Clean {
            path: "/x.toml",
            source: not_found(),
        };
        assert_eq!(messages(&clean), ["cannot read /x.toml", "no such file"]);
        assert_eq!(one_line(&clean), "cannot read /x.toml: no such file");
        let repeats = Repeats {
            path: "/x.toml",
            source: not_found(),
        };
        assert_eq!(messages(&repeats), ["cannot read /x.toml: no such file"]);
    }
}
