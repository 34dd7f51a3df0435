use std::collections::HashMap;
use std::path::Path;

use crate::cursor::Cursor;
use crate::error::{invalid, Error, Result};
use crate::types::GgmlType;
use crate::value::{Value, ValueType};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};

/// One tensor's header entry. `dims[0]` is the innermost (contiguous) dimension, as in ggml.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the tensor-data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

enum Backing {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file. Tensor data is never copied: [`GgufFile::tensor_data`] returns a
/// slice of the map.
pub struct GgufFile {
    backing: Backing,
    pub version: u32,
    pub alignment: u64,
    data_start: u64,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only and private; we never hand out references that
        // outlive `self`. Another process truncating the file underneath us is outside what
        // any mmap reader can defend against, as with every GGUF loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(Backing::Map(map))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Backing::Owned(bytes))
    }

    fn parse(backing: Backing) -> Result<Self> {
        let buf = backing.bytes();
        let mut c = Cursor::new(buf);
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        // A tensor info is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = c.count("tensor count", 24)?;
        // A key-value pair is at least 8 (key len) + 4 (type) + 1 bytes.
        let n_kv = c.count("metadata count", 13)?;

        let mut metadata = Vec::with_capacity(n_kv);
        let mut meta_index = HashMap::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let ty = ValueType::from_id(c.u32(&format!("type of metadata {key}"))?)?;
            let value = Value::read(&mut c, ty, &format!("metadata {key}"), 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(invalid("metadata", format!("duplicate key {key}")));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(invalid(
                        "general.alignment",
                        format!("{v:?} is not a power of two"),
                    ))
                }
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let t = read_tensor_info(&mut c, i, alignment)?;
            if tensor_index.insert(t.name.clone(), tensors.len()).is_some() {
                return Err(invalid(
                    "tensor table",
                    format!("duplicate tensor name {}", t.name),
                ));
            }
            tensors.push(t);
        }

        let data_start = (c.pos() as u64).div_ceil(alignment) * alignment;
        let len = buf.len() as u64;
        for t in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes))
                .ok_or_else(|| invalid(format!("tensor {}", t.name), "offset overflows"))?;
            if end > len {
                return Err(Error::Truncated {
                    what: format!("data of tensor {}", t.name),
                    offset: data_start + t.offset,
                    needed: t.n_bytes,
                    len,
                });
            }
        }
        let file = Self {
            backing,
            version,
            alignment,
            data_start,
            metadata,
            meta_index,
            tensors,
            tensor_index,
        };
        // Everything before the tensor data was parsed into owned values: its pages (a
        // large vocabulary's tokens and merges are megabytes) need not stay resident.
        file.release_range(0, data_start as usize);
        Ok(file)
    }

    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, v: &Value) -> Error {
        Error::WrongType {
            key: key.to_string(),
            expected,
            found: v.type_name(),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| Self::wrong(key, "unsigned integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| Self::wrong(key, "number", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "array", v))
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, zero-copy. Bounds were validated at parse time.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.data_start + t.offset) as usize;
        &self.backing.bytes()[start..start + t.n_bytes as usize]
    }

    /// Drops the mapped pages of `t` from this process's resident memory, for a caller
    /// that has copied the tensor into a layout of its own: without it the mapped file
    /// and the copy would both count, twice the model. The page cache keeps the bytes, and
    /// reading the tensor again faults the same bytes back in.
    pub fn release(&self, t: &TensorInfo) {
        self.release_range((self.data_start + t.offset) as usize, t.n_bytes as usize);
    }

    /// Drops the mapped pages of bytes `start..start + len` (rounded out to whole pages).
    fn release_range(&self, start: usize, len: usize) {
        const PAGE: usize = 4096;
        let Backing::Map(map) = &self.backing else {
            return;
        };
        let (lo, hi) = (start / PAGE * PAGE, (start + len).div_ceil(PAGE) * PAGE);
        let hi = hi.min(map.len());
        if hi > lo {
            // SAFETY: the map is private and read-only, so no write can be lost: dropped
            // pages come back from the file unchanged, and slices into them stay valid.
            // A failure only leaves the pages resident.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo)
            };
        }
    }

    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let t = self
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        Ok((t, self.tensor_data(t)))
    }
}

fn read_tensor_info(c: &mut Cursor, i: usize, alignment: u64) -> Result<TensorInfo> {
    let name = c.string(&format!("name of tensor #{i}"))?;
    let what = format!("tensor {name}");
    let n_dims = c.u32(&what)? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(invalid(
            &what,
            format!("{n_dims} dimensions (1..={MAX_DIMS} allowed)"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims);
    for _ in 0..n_dims {
        dims.push(c.u64(&what)?);
    }
    let id = c.u32(&what)?;
    let ty = GgmlType::from_id(id).ok_or(Error::UnknownTensorType {
        name: name.clone(),
        id,
    })?;
    let offset = c.u64(&what)?;
    if offset % alignment != 0 {
        return Err(invalid(
            &what,
            format!("data offset {offset} is not a multiple of the alignment {alignment}"),
        ));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= 1 << 40)
        .ok_or_else(|| invalid(&what, format!("dimensions {dims:?} overflow")))?;
    let (block_elems, block_bytes) = ty.block();
    if dims[0] % block_elems as u64 != 0 {
        return Err(invalid(
            &what,
            format!(
                "row length {} is not a multiple of the {ty} block size {block_elems}",
                dims[0]
            ),
        ));
    }
    let n_bytes = n_elements / block_elems as u64 * block_bytes as u64;
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_elements,
        n_bytes,
    })
}
