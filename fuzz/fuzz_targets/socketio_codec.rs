//! Engine.IO / Socket.IO decoding never panics on any frame, and every
//! event or ack it decodes encodes back to the same packet.
#![no_main]

use protocol::codec::{
    EnginePacket, SocketPacket, decode_engine, decode_socket, encode_socket,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(EnginePacket::Message(body)) = decode_engine(text) {
        let _ = decode_socket(&body);
    }
    if let Ok(packet @ (SocketPacket::Event { .. } | SocketPacket::Ack { .. })) = decode_socket(text) {
        let again = decode_socket(&encode_socket(&packet));
        assert_eq!(again.as_ref(), Ok(&packet), "round trip of {text:?}");
    }
});
