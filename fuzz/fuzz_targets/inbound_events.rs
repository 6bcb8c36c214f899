//! The safety gate never panics: any event name with any JSON arguments is
//! either a typed event or an error.
#![no_main]

use protocol::events::parse_inbound;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // First line: the event name; the rest: its arguments as a JSON array.
    let (name, rest) = text.split_once('\n').unwrap_or((text, "[]"));
    let Ok(serde_json::Value::Array(args)) = serde_json::from_str(rest) else {
        return;
    };
    let _ = parse_inbound(name, args);
});
