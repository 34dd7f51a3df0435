use crate::types::GgmlType;
use crate::value::Value;
use crate::{DEFAULT_ALIGNMENT, MAGIC};

/// A tensor's bytes: given, or made on demand when the file is written, so that
/// multi-gigabyte files can be generated without holding their tensors in memory.
enum Data<'a> {
    Bytes(Vec<u8>),
    Lazy(usize, Box<dyn Fn() -> Vec<u8> + 'a>),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::Bytes(b) => b.len(),
            Data::Lazy(n, _) => *n,
        }
    }
}

/// Builds GGUF v3 files, in memory or streamed to a writer.
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Data<'a>)>,
    alignment: u64,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        Self {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        if key == "general.alignment" {
            if let Some(a) = value.as_u64() {
                self.alignment = a.max(1);
            }
        }
        self.metadata.push((key.to_string(), value));
        self
    }

    /// `dims[0]` is the innermost dimension; `data` must already be in `ty`'s encoding.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, Data::Bytes(data)));
        self
    }

    /// A tensor of `len` bytes that `make` produces when the file is written (it must
    /// return exactly `len` bytes).
    pub fn tensor_lazy(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        len: usize,
        make: impl Fn() -> Vec<u8> + 'a,
    ) -> &mut Self {
        self.tensors.push((
            name.to_string(),
            dims.to_vec(),
            ty,
            Data::Lazy(len, Box::new(make)),
        ));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Streams the file to `w`, making lazy tensors one at a time.
    pub fn write_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            write_value(&mut out, v);
        }
        let align = self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            write_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(align) * align;
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        out.resize(data_start as usize, 0);
        w.write_all(&out)?;
        let mut at = 0u64;
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            w.write_all(&vec![0u8; (off - at) as usize])?;
            let n = data.len();
            match data {
                Data::Bytes(b) => w.write_all(b)?,
                Data::Lazy(len, make) => {
                    let b = make();
                    if b.len() != *len {
                        return Err(std::io::Error::other(format!(
                            "lazy tensor made {} bytes, declared {len}",
                            b.len()
                        )));
                    }
                    w.write_all(&b)?;
                }
            }
            at = off + n as u64;
        }
        Ok(())
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => write_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(t, items) => {
            out.extend_from_slice(&t.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                write_value(out, it);
            }
        }
    }
}
