//! `cargo fuzz run gguf_parse`: any byte string must parse or fail with an error, and a
//! parsed file's tensor views must lie inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = gguf::GgufFile::from_bytes(data.to_vec()) {
        for t in f.tensors() {
            assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
        }
        for (k, _) in f.metadata() {
            let _ = f.get(k);
        }
    }
});
