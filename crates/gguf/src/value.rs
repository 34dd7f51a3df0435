use crate::cursor::Cursor;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    pub fn from_id(id: u32) -> Result<Self> {
        use ValueType::*;
        Ok(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return Err(Error::UnknownValueType(id)),
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    /// Smallest encoding of one value, used to bound array counts.
    fn min_bytes(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value. Arrays keep their element type so that an empty array still says
/// what it would have held.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// Nested arrays deeper than this are rejected: no real model needs them, and recursion
/// on attacker-controlled depth would overflow the stack.
const MAX_NESTING: usize = 4;

impl Value {
    pub(crate) fn read(c: &mut Cursor, ty: ValueType, what: &str, depth: usize) -> Result<Value> {
        use ValueType as T;
        Ok(match ty {
            T::U8 => Value::U8(c.u8(what)?),
            T::I8 => Value::I8(c.u8(what)? as i8),
            T::U16 => Value::U16(c.u16(what)?),
            T::I16 => Value::I16(c.u16(what)? as i16),
            T::U32 => Value::U32(c.u32(what)?),
            T::I32 => Value::I32(c.u32(what)? as i32),
            T::F32 => Value::F32(c.f32(what)?),
            T::Bool => {
                let at = c.pos();
                match c.u8(what)? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(crate::error::invalid(
                            what,
                            format!("bool byte {b} at offset {at}"),
                        ))
                    }
                }
            }
            T::String => Value::String(c.string(what)?),
            T::U64 => Value::U64(c.u64(what)?),
            T::I64 => Value::I64(c.u64(what)? as i64),
            T::F64 => Value::F64(c.f64(what)?),
            T::Array => {
                if depth >= MAX_NESTING {
                    return Err(crate::error::invalid(what, "arrays nested too deeply"));
                }
                let ety = ValueType::from_id(c.u32(what)?)?;
                let n = c.count(what, ety.min_bytes())?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Value::read(c, ety, what, depth + 1)?);
                }
                Value::Array(ety, items)
            }
        })
    }

    pub fn value_type(&self) -> ValueType {
        use ValueType as T;
        match self {
            Value::U8(_) => T::U8,
            Value::I8(_) => T::I8,
            Value::U16(_) => T::U16,
            Value::I16(_) => T::I16,
            Value::U32(_) => T::U32,
            Value::I32(_) => T::I32,
            Value::F32(_) => T::F32,
            Value::Bool(_) => T::Bool,
            Value::String(_) => T::String,
            Value::Array(..) => T::Array,
            Value::U64(_) => T::U64,
            Value::I64(_) => T::I64,
            Value::F64(_) => T::F64,
        }
    }

    /// Any integer type, as u64 when it is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }

    pub fn type_name(&self) -> String {
        match self {
            Value::Array(t, v) => format!("array of {} {:?}", v.len(), t),
            v => format!("{:?}", v.value_type()),
        }
    }
}
