//! Pretty `Debug` output: nested brackets for small tensors, a summary for big ones.

use crate::{Element, Tensor};
use std::fmt;

/// Tensors with more elements than this print only their shape and a few values.
const FULL_PRINT_LIMIT: usize = 256;

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.to_vec();
        write!(f, "Tensor<{}>{:?} ", T::NAME, self.shape())?;
        if data.len() > FULL_PRINT_LIMIT {
            let head: Vec<String> = data.iter().take(6).map(|v| format!("{v:.4}")).collect();
            return write!(f, "[{}, …]", head.join(", "));
        }
        write_nested(f, &data, self.shape())
    }
}

fn write_nested<T: Element>(
    f: &mut fmt::Formatter<'_>,
    data: &[T],
    shape: &[usize],
) -> fmt::Result {
    match shape.split_first() {
        None => write!(f, "{:.4}", data[0]),
        Some((&n, rest)) => {
            let block = rest.iter().product::<usize>();
            write!(f, "[")?;
            for i in 0..n {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write_nested(f, &data[i * block..(i + 1) * block], rest)?;
            }
            write!(f, "]")
        }
    }
}
