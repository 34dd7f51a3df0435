//! The output matrix of a parallel matmul, shared by every task of the region: each
//! task writes only its own columns. The memory is viewed as relaxed atomics, so handing
//! every task the whole matrix is sound whatever the tasks do (no task holds a `&mut`
//! that overlaps another's); relaxed stores are plain stores on x86. The SIMD kernels
//! store through [`SharedOut::as_ptr`] and rely on the columns being disjoint.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct SharedOut<'a> {
    cells: &'a [AtomicU32],
}

impl<'a> SharedOut<'a> {
    pub fn new(y: &'a mut [f32]) -> Self {
        // SAFETY: AtomicU32 has the size and alignment of u32, which f32 shares; the
        // exclusive borrow of `y` lasts as long as the view, so nothing else accesses
        // the memory meanwhile.
        let cells = unsafe { &*(y as *mut [f32] as *const [AtomicU32]) };
        Self { cells }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// The matrix from element `start` on.
    pub fn from(&self, start: usize) -> SharedOut<'_> {
        SharedOut {
            cells: &self.cells[start..],
        }
    }

    #[inline]
    pub fn set(&self, i: usize, v: f32) {
        self.cells[i].store(v.to_bits(), Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn copy_from(&self, at: usize, src: &[f32]) {
        for (c, &v) in self.cells[at..at + src.len()].iter().zip(src) {
            c.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    /// Copies `src` to elements `at..` as one plain copy (what a SIMD epilogue wants: a
    /// loop of atomic stores costs the AVX2 kernel ~6% more instructions).
    ///
    /// # Safety
    /// No other task may access elements `at..at + src.len()` meanwhile.
    pub unsafe fn copy_from_unshared(&self, at: usize, src: &[f32]) {
        assert!(at + src.len() <= self.cells.len(), "write past the output");
        // SAFETY: in bounds (asserted); exclusive per the caller; the cells are
        // interior-mutable, so writing through a pointer derived from `&self` is allowed.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_ptr().add(at), src.len()) };
    }

    /// For SIMD stores; the caller writes only elements no other task touches. Writes
    /// through it are allowed: the cells are interior-mutable (atomics).
    pub fn as_ptr(&self) -> *mut f32 {
        self.cells.as_ptr() as *mut f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_where_asked_including_tails_and_empty_views() {
        let mut y = vec![0f32; 10];
        {
            let out = SharedOut::new(&mut y);
            out.set(0, 1.5);
            out.copy_from(7, &[7.0, 8.0, 9.0]);
            let tail = out.from(4);
            tail.set(1, -2.0);
            assert_eq!(tail.len(), 6);
            assert_eq!(out.from(10).len(), 0);
            out.copy_from(10, &[]);
            // SAFETY: element 2 is written by no one else.
            unsafe { *out.as_ptr().add(2) = 3.0 };
            // SAFETY: elements 3..5 likewise.
            unsafe { out.copy_from_unshared(3, &[4.0, 4.5]) };
        }
        assert_eq!(y, [1.5, 0.0, 3.0, 4.0, 4.5, -2.0, 0.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    #[should_panic]
    fn an_unshared_copy_past_the_end_panics() {
        let mut y = vec![0f32; 4];
        // SAFETY: nothing else touches y.
        unsafe { SharedOut::new(&mut y).copy_from_unshared(3, &[1.0, 2.0]) };
    }

    #[test]
    #[should_panic]
    fn a_write_past_the_end_panics_instead_of_scribbling() {
        let mut y = vec![0f32; 4];
        SharedOut::new(&mut y).copy_from(3, &[1.0, 2.0]);
    }
}
