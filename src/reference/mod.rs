//! CPU reference of every op: plain loops, f64 accumulation. The ground truth for the tests.
