//! The reader on valid, truncated, corrupt and hostile files: errors that name the
//! problem, never a panic.

use gguf::{Error, GgmlType, GgufFile, GgufWriter, Value, ValueType};

fn fixture() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("u8", Value::U8(7))
        .meta("i8", Value::I8(-7))
        .meta("u16", Value::U16(700))
        .meta("i16", Value::I16(-700))
        .meta("u32", Value::U32(70000))
        .meta("i32", Value::I32(-70000))
        .meta("f32", Value::F32(1.5))
        .meta("bool", Value::Bool(true))
        .meta("u64", Value::U64(1 << 40))
        .meta("i64", Value::I64(-(1 << 40)))
        .meta("f64", Value::F64(2.25))
        .meta(
            "arr",
            Value::Array(
                ValueType::String,
                vec![Value::String("a".into()), Value::String("bc".into())],
            ),
        )
        .meta(
            "nested",
            Value::Array(
                ValueType::Array,
                vec![Value::Array(ValueType::U8, vec![Value::U8(1)])],
            ),
        );
    let f32s: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    w.tensor("a", &[32, 2], GgmlType::F32, f32s);
    w.tensor("b", &[32], GgmlType::Q4_1, vec![0x11; 20]);
    w.to_bytes()
}

#[test]
fn a_written_file_reads_back_with_every_value_type() {
    let f = GgufFile::from_bytes(fixture()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get("i8"), Some(&Value::I8(-7)));
    assert_eq!(f.get("i16"), Some(&Value::I16(-700)));
    assert_eq!(f.get("i32"), Some(&Value::I32(-70000)));
    assert_eq!(f.get_u64("u64").unwrap(), 1 << 40);
    assert_eq!(f.get("i64"), Some(&Value::I64(-(1 << 40))));
    assert_eq!(f.get_f64("f32").unwrap(), 1.5);
    assert_eq!(f.get_f64("f64").unwrap(), 2.25);
    assert!(f.get_bool("bool").unwrap());
    assert_eq!(f.get_array("arr").unwrap().len(), 2);
    assert!(matches!(f.get_u64("arr"), Err(Error::WrongType { .. })));
    assert!(matches!(f.get_u64("missing"), Err(Error::MissingKey(_))));
    let (t, data) = f.tensor_bytes("a").unwrap();
    assert_eq!(t.dims, vec![32, 2]);
    assert_eq!(f32::from_le_bytes(data[4..8].try_into().unwrap()), 1.0);
    let (t, data) = f.tensor_bytes("b").unwrap();
    assert_eq!((t.ty, t.n_bytes, data.len()), (GgmlType::Q4_1, 20, 20));
    assert!(matches!(
        f.tensor_bytes("zzz"),
        Err(Error::MissingTensor(_))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = fixture();
    for len in 0..bytes.len() {
        let r = GgufFile::from_bytes(bytes[..len].to_vec());
        assert!(r.is_err(), "prefix of {len} bytes parsed");
    }
}

#[test]
fn bad_magic_and_versions_are_named() {
    let mut b = fixture();
    b[0] = b'X';
    assert!(matches!(GgufFile::from_bytes(b), Err(Error::BadMagic(_))));
    for v in [1u32, 4, 99] {
        let mut b = fixture();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert!(matches!(GgufFile::from_bytes(b), Err(Error::UnsupportedVersion(x)) if x == v));
    }
}

#[test]
fn hostile_counts_are_rejected_before_allocating() {
    for field in [8usize, 16] {
        let mut b = fixture();
        b[field..field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = GgufFile::from_bytes(b).expect_err("must fail");
        assert!(e.to_string().contains("count"), "{e}");
    }
}

#[test]
fn every_single_byte_corruption_is_an_error_or_a_valid_file() {
    let base = fixture();
    for i in 0..base.len() {
        for v in [0x00u8, 0xFF, 0x80, 0x07] {
            let mut b = base.clone();
            b[i] = v;
            // Either outcome is fine; what matters is no panic and, when it parses,
            // that every tensor's bytes are inside the file.
            if let Ok(f) = GgufFile::from_bytes(b) {
                for t in f.tensors() {
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                }
            }
        }
    }
}

#[test]
fn unknown_types_and_bad_offsets_are_named() {
    let mut w = GgufWriter::new();
    w.tensor("t", &[32], GgmlType::Q4_1, vec![0; 20]);
    let good = w.to_bytes();
    // Tensor type id sits after name (8+1), n_dims (4), dims (8).
    let type_at = 24 + 8 + 1 + 4 + 8;
    let mut b = good.clone();
    b[type_at..type_at + 4].copy_from_slice(&77u32.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(b),
        Err(Error::UnknownTensorType { id: 77, .. })
    ));
    let mut b = good.clone();
    b[type_at + 4..type_at + 12].copy_from_slice(&3u64.to_le_bytes());
    assert!(GgufFile::from_bytes(b)
        .unwrap_err()
        .to_string()
        .contains("alignment"));
    let mut b = good.clone();
    b[type_at + 4..type_at + 12].copy_from_slice(&(1u64 << 20).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(b),
        Err(Error::Truncated { .. })
    ));
    let mut b = good;
    b[type_at - 8..type_at].copy_from_slice(&33u64.to_le_bytes());
    assert!(GgufFile::from_bytes(b)
        .unwrap_err()
        .to_string()
        .contains("block size"));
}

#[test]
fn the_real_model_parses_and_its_truncations_fail_cleanly() {
    let path = std::env::var_os("AUTOGLM_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("AUTOGLM_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME")
                        .map(std::path::PathBuf::from)
                        .unwrap_or_else(|| {
                            std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
                                .join(".cache")
                        })
                        .join("autoglm")
                });
            home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}: run `autoglm pull` first"));
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(f.tensor("token_embd.weight").unwrap().ty, GgmlType::Q8_0);
    let bytes = std::fs::read(&path).unwrap();
    for len in [0, 3, 100, 5000, 1 << 20, bytes.len() - 1] {
        assert!(
            GgufFile::from_bytes(bytes[..len].to_vec()).is_err(),
            "{len}"
        );
    }
    assert!(matches!(
        GgufFile::open("/nonexistent/model.gguf"),
        Err(Error::Open { .. })
    ));
}
