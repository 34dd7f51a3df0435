//! `cargo fuzz run request_parse`: any bytes, as a request body of either endpoint, must
//! be refused with a 4xx error or parse into a request that serializes back to JSON
//! that parses to the same request (the server's parser and serde agree).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match api::ChatRequest::from_json(&v) {
        Ok(r) => {
            let back = serde_json::to_value(&r).expect("a parsed request serializes");
            assert_eq!(api::ChatRequest::from_json(&back).as_ref(), Ok(&r));
        }
        Err(e) => assert!((400..500).contains(&e.status), "{e}"),
    }
    match api::CompletionRequest::from_json(&v) {
        Ok(r) => {
            let back = serde_json::to_value(&r).expect("a parsed request serializes");
            assert_eq!(api::CompletionRequest::from_json(&back).as_ref(), Ok(&r));
        }
        Err(e) => assert!((400..500).contains(&e.status), "{e}"),
    }
});
