//! What of a mapped file stays in the process's resident memory: the header once it is
//! parsed, and a tensor once its reader releases it, must not (they would count beside
//! the copies made of them).
#![cfg(target_os = "linux")]

use gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};
use std::path::{Path, PathBuf};

/// Resident KiB of the mapping of `path` in this process, from /proc/self/smaps.
fn resident_kib(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_map = line.ends_with(name);
        } else if in_map && line.starts_with("Rss:") {
            total += line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

fn write_model(dir: &Path) -> PathBuf {
    let mut w = GgufWriter::new();
    // A tokenizer-sized header: 200k strings, about 3 MiB.
    let tokens = (0..200_000)
        .map(|i| Value::String(format!("token{i:07}")))
        .collect();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta(
            "tokenizer.ggml.tokens",
            Value::Array(ValueType::String, tokens),
        );
    let data: Vec<u8> = (0..1 << 20)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    w.tensor("w", &[1024, 1024], GgmlType::F32, data);
    let path = dir.join("resident.gguf");
    std::fs::write(&path, w.to_bytes()).unwrap();
    path
}

#[test]
fn the_parsed_header_and_released_tensors_leave_no_resident_pages() {
    let dir = std::env::temp_dir().join(format!("gguf-resident-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = write_model(&dir);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.get_array("tokenizer.ggml.tokens").unwrap().len(), 200_000);
    let after_open = resident_kib(&path);
    // The header is ~3 MiB, all of it read by the parse.
    assert!(after_open < 256, "{after_open} KiB resident after parsing");

    let (t, bytes) = f.tensor_bytes("w").unwrap();
    let sum: u64 = bytes.iter().map(|&b| b as u64).sum();
    let touched = resident_kib(&path);
    assert!(
        touched >= 4000,
        "{touched} KiB resident after reading 4 MiB (sum {sum})"
    );
    f.release(t);
    let released = resident_kib(&path);
    assert!(released < 256, "{released} KiB resident after release");
    // Released pages come back from the file unchanged.
    let again: u64 = f.tensor_data(t).iter().map(|&b| b as u64).sum();
    assert_eq!(again, sum);
    drop(f);
    std::fs::remove_dir_all(&dir).unwrap();
}
